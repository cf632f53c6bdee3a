"""bridge: mirror a CouchDB `_changes` feed (or an SSE stream) into a PANDA dataset, at least once."""

import logging

__version__ = "0.1.0"
__all__ = ["__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
