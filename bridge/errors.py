"""The BridgeError hierarchy: every error says what happens next.

    BridgeError
    ├── TransientError          retry with capped, jittered backoff; nothing is recorded past it
    │   ├── SourceUnavailable   CouchDB or the SSE server unreachable, timed out, 5xx, 429
    │   ├── FeedInterrupted     the feed stalled, was cut mid-line, ended without its terminator or did not parse
    │   └── SinkUnavailable     PANDA unreachable, timed out, 5xx, 429, outcome unknown (502/504)
    │       └── DatasetLocked   PANDA's 403 "Dataset is currently locked by another process."
    ├── FatalError              stop at once with a message and a non-zero exit code
    │   ├── ConfigError         a bad configuration, found before anything is written (exit 2)
    │   ├── AuthError           401/403 from CouchDB or 401 from PANDA: never retried (exit 3)
    │   ├── NotFoundError       the database or dataset does not exist (exit 4)
    │   ├── CheckpointMismatch  the saved checkpoint belongs to another pipeline or an older database (exit 5)
    │   ├── ProtocolError       an answer the bridge cannot act on, e.g. a malformed seq (exit 6)
    │   ├── InstanceLocked      another bridge process holds this state file's lock (exit 7)
    │   └── StateError          the bridge's own files (state file, dead-letter file, lock) cannot be read
    │                           or written (exit 8)
    ├── RejectedError           the sink refused these rows: they go to the dead-letter file, the bridge goes on
    │   ├── MappingError        a document that cannot become a PANDA row (no external_id, bad field)
    │   └── DecodeError         a well-formed feed item that is not a change (no id): dead-lettered raw
    └── StopRequested           the operator asked to stop while a call was being retried: exit 0, the
                                batch in hand stays unacknowledged and the checkpoint where it was

Adapters translate foreign exceptions (requests, sqlite3, OSError) into these at their boundary, so the core
and `cli.main` only ever see a BridgeError.
"""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "TransientError",
    "SourceUnavailable",
    "FeedInterrupted",
    "DecodeError",
    "SinkUnavailable",
    "DatasetLocked",
    "FatalError",
    "ConfigError",
    "AuthError",
    "NotFoundError",
    "CheckpointMismatch",
    "ProtocolError",
    "InstanceLocked",
    "StateError",
    "RejectedError",
    "MappingError",
    "StopRequested",
]


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, status: int | None = None, seq: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        """The HTTP status behind the error, when there was one."""
        self.seq = seq
        """The seq the bridge was at, when it matters."""

    def __str__(self) -> str:
        return self.message


class TransientError(BridgeError):
    """A fault that may clear by itself: retry with backoff from the last acknowledged position."""


class SourceUnavailable(TransientError):
    """The source could not be reached or answered with a retryable status."""


class FeedInterrupted(TransientError):
    """The feed stopped before its end: stalled, cut off mid-line or missing its terminator."""


class SinkUnavailable(TransientError):
    """PANDA could not be reached, timed out, or answered with a retryable status."""


class DatasetLocked(SinkUnavailable):
    """PANDA's dataset lock is held by another process (403 on a data endpoint)."""


class FatalError(BridgeError):
    """A condition retrying cannot fix: stop with a clear message."""

    exit_code = 4


class ConfigError(FatalError):
    """The configuration is wrong; found before anything was written."""

    exit_code = 2


class AuthError(FatalError):
    """Credentials were refused. Never retried: CouchDB locks accounts after repeated failures."""

    exit_code = 3


class NotFoundError(FatalError):
    """The source database or the PANDA dataset does not exist."""

    exit_code = 4


class CheckpointMismatch(FatalError):
    """The checkpoint belongs to another pipeline, or the database was recreated since it was saved."""

    exit_code = 5


class ProtocolError(FatalError):
    """An answer the bridge cannot act on, such as CouchDB's 400 for a malformed seq."""

    exit_code = 6


class InstanceLocked(FatalError):
    """A running bridge holds the state file's lock: one bridge per state file, refused before any work."""

    exit_code = 7

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        """The holder's process id, when it could be read."""


class StateError(FatalError):
    """The bridge's local state (state file, dead-letter file, lock) cannot be read or written.

    The disk is full or read-only, the file is not the bridge's or was damaged: an operator must look at
    the named file. Nothing past the last commit is recorded, so a restart after the fix loses nothing.
    """

    exit_code = 8


class RejectedError(BridgeError):
    """The sink refused one row for a reason retrying cannot fix; the row goes to the dead-letter file."""

    def __init__(
        self, message: str, *, status: int | None = None, seq: object = None, external_id: str | None = None
    ) -> None:
        super().__init__(message, status=status, seq=seq)
        self.external_id = external_id


class MappingError(RejectedError):
    """A document that cannot become a PANDA row; dead-lettered with this message as the reason."""


class DecodeError(RejectedError):
    """A feed item that parsed but is not a change (a row without an id, an event that is not JSON).

    Reading it again would give the same item, so it is dead-lettered with its raw text. Bytes that do not
    parse at all (a page cut off mid-line) are a FeedInterrupted instead, and are read again.
    """


class StopRequested(BridgeError):
    """SIGTERM/SIGINT arrived while a call was waiting to be retried; the unacknowledged work is dropped."""

    exit_code = 0
