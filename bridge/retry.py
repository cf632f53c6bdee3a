"""Retries transient faults with capped exponential backoff and full jitter, and stops waiting on request.

The delay schedule comes from `backoff` (`expo` with `full_jitter`); the loop is ours so that a stop request
ends a wait at once instead of sleeping it out, and so that every retry is logged with its cause and delay.
The settings are config's RetrySettings, the one place their defaults and rules are written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

from bridge.config.settings import STARTUP_RETRY, RetrySettings
from bridge.errors import StopRequested, TransientError

__all__ = ["Retrying", "startup_retries", "call_with_retry", "delays"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Retrying(Protocol):
    """An adapter whose retries follow its public `retry` settings."""

    retry: RetrySettings


@contextmanager
def startup_retries(*adapters: Retrying) -> Iterator[None]:
    """Give these adapters the start-up checks' few quick tries (STARTUP_RETRY), then their own settings back.

    The same adapters then run the pipeline: nothing checked at start-up has to be copied across.
    """
    saved = [adapter.retry for adapter in adapters]
    for adapter in adapters:
        adapter.retry = STARTUP_RETRY
    try:
        yield
    finally:
        for adapter, retry in zip(adapters, saved, strict=True):
            adapter.retry = retry


def delays(policy: RetrySettings) -> Iterator[float]:
    """The capped, fully jittered waits for successive retries (a fresh schedule per call)."""
    import backoff  # here, not at the top: it imports asyncio (15 ms), which a run without faults never needs

    schedule = backoff.expo(base=2, factor=policy.initial_delay, max_value=policy.max_delay)
    next(schedule)  # backoff's wait generators first yield None, for its own priming send(None)
    for value in schedule:
        yield backoff.full_jitter(value)


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetrySettings,
    stop: threading.Event,
    what: str,
    on_retry: Callable[[str, str], None] | None = None,
) -> T:
    """Call `fn` until it returns, retrying on TransientError.

    Each retry is logged at WARNING with a stable message and `extra` fields (what, error, delay, attempt).
    Raises the last TransientError after `policy.max_tries` attempts, StopRequested when `stop` is set
    while waiting, and lets any other exception through at once. `on_retry(what, error class name)` is told
    of each retry before its wait (the metrics count them). The schedule starts afresh on every
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
            if on_retry is not None:
                on_retry(what, type(exc).__name__)
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
