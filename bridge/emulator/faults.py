"""Test switches PANDA lacks: failing writes (before or after they happen), write latency, slow replies,
and rows refused by PANDA's own validation.

Contract 18. Pure state behind a lock: decisions are made here, the server does the sleeping.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from . import codec
from .rules import CANNED_ERROR, LOCKED_TEXT

__all__ = ["Fault", "Faults", "RowRule", "ROW_PROBLEMS", "fault_body"]

ROW_PROBLEMS = ("external_id", "data")
"""What `Faults.reject_rows` does to a matching bulk object before PANDA's validation sees it."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure of a write request."""

    status: int
    """The status to answer with."""
    after_write: bool
    """True: the write happens first, then this status replaces PANDA's answer (an nginx 504)."""


@dataclass(frozen=True, slots=True)
class RowRule:
    """Bulk objects whose external_id matches `pattern` (re.search) fail PANDA's validation."""

    pattern: re.Pattern[str]
    problem: str
    """`external_id`: the id is made one PANDA forbids (400, contract 7); `data`: the row loses its last
    cell (400 "Got N data fields. Expected M.", contract 8)."""

    def apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        """The object as PANDA's validation will see it."""
        external_id = obj.get("external_id")
        if not isinstance(external_id, str) or not self.pattern.search(external_id):
            return obj
        if self.problem == "external_id":
            return {**obj, "external_id": external_id + " (forbidden)"}
        data = obj.get("data")
        return {**obj, "data": data[:-1]} if isinstance(data, list) else obj


class Faults:
    """The switches of one emulator; every method is thread-safe."""

    def __init__(self, latency: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._initial_latency = latency
        self._count: tuple[Fault, int] | None = None
        self._ratio: tuple[Fault, float, random.Random] | None = None
        self._slow: tuple[float, int | None] | None = None
        self._row_rules: tuple[RowRule, ...] = ()
        self.latency = latency
        """Seconds every write takes while holding the single-worker lock."""

    def reset(self) -> None:
        """Clear every switch and restore the latency given at construction."""
        with self._lock:
            self._count = None
            self._ratio = None
            self._slow = None
            self._row_rules = ()
            self.latency = self._initial_latency

    def reject_rows(self, pattern: str | None, problem: str = "external_id") -> None:
        """Make bulk objects whose external_id matches `pattern` fail validation with PANDA's real 400.

        PANDA's rules never refuse a row the bridge builds, so this stands in for a PANDA that does (a
        stricter id rule, a changed column count): the matching object is altered as `problem` says
        (see RowRule) and the emulator's ordinary validation answers. Rules add up; None clears them all.
        """
        if pattern is None:
            with self._lock:
                self._row_rules = ()
            return
        if problem not in ROW_PROBLEMS:
            raise ValueError("problem must be one of %s" % (ROW_PROBLEMS,))
        try:
            rule = RowRule(re.compile(pattern), problem)
        except re.error as exc:
            raise ValueError("bad pattern %r: %s" % (pattern, exc)) from None
        with self._lock:
            self._row_rules += (rule,)

    def rewrite_bulk(self, body: Any) -> Any:
        """A bulk PUT body with the row rules applied (the body itself when no rule changes it)."""
        with self._lock:
            rules = self._row_rules
        if not rules or not isinstance(body, dict) or not isinstance(body.get("objects"), list):
            return body
        objects = []
        for obj in body["objects"]:
            if isinstance(obj, dict):
                for rule in rules:
                    obj = rule.apply(obj)
            objects.append(obj)
        return {**body, "objects": objects}

    def fail_writes(self, status: int, count: int = 1, after_write: bool = False) -> None:
        """Fail the next `count` writes with `status`; replaces an earlier call, count 0 clears."""
        with self._lock:
            self._count = (Fault(status, after_write), count) if count > 0 else None

    def fail_ratio(self, status: int, ratio: float, seed: int = 0, after_write: bool = False) -> None:
        """Fail each write with probability `ratio`, drawn from a RNG seeded with `seed`; 0 clears."""
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("ratio must be between 0 and 1")
        with self._lock:
            self._ratio = (Fault(status, after_write), ratio, random.Random(seed)) if ratio > 0 else None

    def set_latency(self, seconds: float) -> None:
        """Seconds every write takes while holding the single-worker lock."""
        if seconds < 0:
            raise ValueError("latency must not be negative")
        with self._lock:
            self.latency = seconds

    def slow_replies(self, seconds: float, count: int | None = None) -> None:
        """Delay the next `count` API answers (all of them when None) by `seconds`; 0 seconds clears."""
        with self._lock:
            self._slow = (seconds, count) if seconds > 0 and (count is None or count > 0) else None

    def next_write_fault(self) -> Fault | None:
        """The fault for the write being received, if any; consumes one of `fail_writes`' count first."""
        with self._lock:
            if self._count is not None:
                fault, left = self._count
                self._count = (fault, left - 1) if left > 1 else None
                return fault
            if self._ratio is not None:
                fault, ratio, rng = self._ratio
                if rng.random() < ratio:
                    return fault
            return None

    def next_delay(self) -> float:
        """Seconds to wait before answering this request (consumes one slow reply)."""
        with self._lock:
            if self._slow is None:
                return 0.0
            seconds, left = self._slow
            if left is not None:
                self._slow = (seconds, left - 1) if left > 1 else None
            return seconds


def fault_body(status: int) -> tuple[bytes, str]:
    """(body, content type) of an injected status: Django's canned 500, PANDA's 403, else nginx's page."""
    if status == 500:
        return codec.dumps(CANNED_ERROR), "application/json; charset=utf-8"
    if status == 403:
        return LOCKED_TEXT.encode(), "text/html; charset=utf-8"
    try:
        title = "%d %s" % (status, HTTPStatus(status).phrase)
    except ValueError:
        title = str(status)
    page = "<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n" % (
        title,
        title,
    )
    return (page + "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").encode(), "text/html"
