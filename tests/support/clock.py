"""A clock that moves only when a test says so, for code that takes `clock: Callable[[], float]`."""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """Monotonic seconds under test control: pass `clock.now` (or the clock) where a clock is injected."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move forward by `seconds` (>= 0): a monotonic clock never goes back."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back (advance(%r))" % (seconds,))
        self._now += seconds

    def __repr__(self) -> str:
        return "ManualClock(%r)" % (self._now,)
