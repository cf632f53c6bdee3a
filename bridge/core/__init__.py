"""The pure core: filter, map, batch and plan. Nothing here does I/O or imports a module that does."""
