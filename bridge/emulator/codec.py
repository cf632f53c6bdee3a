"""JSON in and out for the emulator: orjson for speed, the standard library where orjson refuses.

PANDA (Python 2 json) accepts integers beyond 64 bits and NaN, which orjson does not; output keys are sorted
and non-ASCII is sent as raw UTF-8 (contract 1).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["loads", "dumps"]


def loads(body: bytes) -> Any:
    """Parse a request body; raises ValueError when PANDA's parser would fail too."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body.decode("utf-8"))


def dumps(value: Any) -> bytes:
    """Serialise with sorted keys and raw UTF-8."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")
