"""Reading the next catch-up page while this one is parsed: at most one body, fetched in a background thread.

Between two catch-up pages the server used to sit idle while the reader parsed the page it had just got
(and waited for the interpreter lock to do so): a tenth of a backfill's wall time from PouchDB Server.
Now, once a page's body is read, the reader guesses the next request from the body's tail (its
`last_seq`, changes_page.read_tail) and the row limit the page sizer will give if the page was full, and
starts that request here; then it parses. The guess is only a guess: the body fetched ahead is used only
for exactly the request the reader then makes (the same since, limit and feed), else it is waited for and
dropped, so what the bridge reads never depends on the guess. A fetch ahead of the right request that
failed raises its error in the reader, as if the reader had made the request itself: the same retry, the
same log line, from the same seq. A body fetched ahead is at most one page more in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future

from bridge.ops import logcontext

__all__ = ["ReadAhead"]


class ReadAhead:
    """One background fetch at a time, keyed by the request it answers. Used by the reading thread only."""

    def __init__(self) -> None:
        self._key: Hashable | None = None
        self._future: Future[bytes] | None = None

    @property
    def busy(self) -> bool:
        """True while a fetch ahead is held (running or done, not yet taken)."""
        return self._future is not None

    def start(self, key: Hashable, fetch: Callable[[], bytes]) -> None:
        """Run `fetch` in a daemon thread, for the request `key` names (anything held before is dropped)."""
        self.settle()
        future: Future[bytes] = Future()

        def run() -> None:
            try:
                future.set_result(fetch())
            except BaseException as exc:  # noqa: BLE001 (the reader makes the request itself)
                future.set_exception(exc)

        self._key, self._future = key, future
        logcontext.thread(run, name="bridge-read-ahead").start()

    def take(self, key: Hashable) -> bytes | None:
        """The body fetched for `key`, waiting for it, or the error its fetch raised; None when nothing is
        held, or what is held answers another request (then it is waited for and dropped)."""
        future, held = self._future, self._key
        self._key = self._future = None
        if future is None:
            return None
        if held == key:
            return future.result()
        future.exception()  # waits; a guess that missed was never the reader's request, nor its error
        return None

    def settle(self) -> None:
        """Wait for a fetch ahead still running and drop it (its request ends by itself: a catch-up page)."""
        self.take(_NOTHING)


_NOTHING = object()
