"""Retries transient faults with capped exponential backoff and full jitter, and stops waiting on request.

The delay schedule comes from `backoff` (`expo` with `full_jitter`); the loop is ours so that a stop request
ends a wait at once instead of sleeping it out, and so that every retry is logged with its cause and delay.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from bridge.errors import StopRequested, TransientError

__all__ = ["RetryPolicy", "call_with_retry", "delays"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient faults are retried."""

    initial_delay: float = 0.5
    """Seconds before the first retry (the base of the exponential schedule)."""
    max_delay: float = 30.0
    """The cap on any one wait, in seconds."""
    max_tries: int | None = None
    """Give up and re-raise after this many attempts; None retries until stopped."""
    on_retry: Callable[[str, str], None] | None = field(default=None, compare=False)
    """Told (what, error class name) before each retry: how the metrics count retries."""

    def __post_init__(self) -> None:
        if self.initial_delay <= 0:
            raise ValueError("retry initial delay must be positive")
        if self.max_delay < self.initial_delay:
            raise ValueError("retry max delay must be at least the initial delay")
        if self.max_tries is not None and self.max_tries < 1:
            raise ValueError("retry max tries must be at least 1")


def delays(policy: RetryPolicy) -> Iterator[float]:
    """The capped, fully jittered waits for successive retries (a fresh schedule per call)."""
    import backoff  # here, not at the top: it imports asyncio (15 ms), which a run without faults never needs

    schedule = backoff.expo(base=2, factor=policy.initial_delay, max_value=policy.max_delay)
    next(schedule)  # backoff's wait generators first yield None, for its own priming send(None)
    for value in schedule:
        yield backoff.full_jitter(value)


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    stop: threading.Event,
    what: str,
) -> T:
    """Call `fn` until it returns, retrying on TransientError.

    Each retry is logged at WARNING with a stable message and `extra` fields (what, error, delay, attempt).
    Raises the last TransientError after `policy.max_tries` attempts, StopRequested when `stop` is set
    while waiting, and lets any other exception through at once. The schedule starts afresh on every
    call, which is how the delay resets after a good response.
    """
    schedule = delays(policy)
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except TransientError as exc:
            if policy.max_tries is not None and attempt >= policy.max_tries:
                raise
            if stop.is_set():
                raise StopRequested(f"stop requested while retrying {what}") from exc
            delay = next(schedule)
            if policy.on_retry is not None:
                policy.on_retry(what, type(exc).__name__)
            logger.warning(
                "retrying %s in %.2fs (attempt %d): %s: %s",
                what,
                delay,
                attempt,
                type(exc).__name__,
                exc,
                extra={"what": what, "error": type(exc).__name__, "delay": delay, "attempt": attempt},
            )
            if stop.wait(delay):
                raise StopRequested(f"stop requested while retrying {what}") from exc
