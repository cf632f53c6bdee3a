"""Sources: read a `_changes` feed or an SSE stream (I/O), and decode raw items into Changes (pure)."""
