"""A strict PANDA API emulator for tests and benchmarks (console script `bridge-panda-emulator`).

It enforces the PANDA contract (panda-api.md sections 1-14) and adds section 18's test switches.
"""

from .server import DEFAULT_API_KEY, DEFAULT_EMAIL, PandaEmulator, RecordedRequest

__all__ = ["PandaEmulator", "RecordedRequest", "DEFAULT_EMAIL", "DEFAULT_API_KEY"]
