"""Frozen, validated settings, one dataclass per concern; the adapters and the core take these directly.

Every default is defined once, as a dataclass field default, and every rule once, in its `__post_init__`
(a ConfigError naming the section). `loader.py` fills them from a TOML file, the environment and options.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bridge.errors import ConfigError

__all__ = [
    "SourceSettings",
    "PandaSettings",
    "MappingSettings",
    "CheckpointSettings",
    "BatchSettings",
    "DEFAULT_MAX_REQUEST_BYTES",
    "RetrySettings",
    "VerifySettings",
    "parse_duration",
    "HttpSettings",
    "LogSettings",
    "STARTUP_RETRY",
    "NOT_A_KEY",
    "Settings",
    "scrub_url",
]

_SLUG = re.compile(r"^[\w-]+$", re.ASCII)
_ID_PREFIX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*[_-]|_")
NOT_A_KEY = types.MappingProxyType({"key": False})
"""Field metadata: set by code, never read from the configuration."""
_FEED_PARAMS = frozenset({"feed", "since", "limit", "include_docs", "heartbeat", "timeout", "filter", "doc_ids",
                          "style", "descending", "last-event-id", "seq_interval"})


def scrub_url(url: str) -> str:
    """The URL without any user:password part, for logs, fingerprints and messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _check_http_url(section: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"[{section}] url must be an http(s) URL, got {scrub_url(url)!r}")


@dataclass(frozen=True)
class SourceSettings:
    """Where the changes come from."""

    kind: str = "couchdb"
    """`couchdb` (a `_changes` feed) or `sse` (any Server-Sent Events stream)."""
    url: str = "http://127.0.0.1:5984"
    """CouchDB server root, or the SSE stream URL; credentials may be given in it."""
    database: str = ""
    """The CouchDB database to follow (couchdb only)."""
    username: str = ""
    """CouchDB user; the password comes from COUCHDB_PASSWORD or `password`."""
    password: str = field(default="", repr=False)
    """CouchDB password (prefer the COUCHDB_PASSWORD environment variable)."""
    feed: str = "longpoll"
    """How to follow once caught up: `longpoll` or `eventsource` (CouchDB's SSE feed)."""
    catch_up_feed: str = "continuous"
    """How to read a backlog of more than a page where the server says how much is pending (CouchDB 2+):
    `continuous` (one streamed request) or `normal` (pages only)."""
    page_size: int = 1000
    """Rows per catch-up page (`limit`) at most."""
    page_bytes: int = 4_000_000
    """Approximate bytes per page: after a bigger page the next ones ask for fewer rows (at least one)."""
    heartbeat: float = 10.0
    """Seconds between the server's heartbeats while following."""
    read_timeout: float = 0.0
    """Seconds without a byte before the feed counts as stalled; 0 means three heartbeats."""
    connect_timeout: float = 10.0
    """Seconds to wait for a connection."""
    selector: dict[str, Any] = field(default_factory=dict)
    """A Mango selector: only matching documents are mirrored."""
    doc_ids: list[str] = field(default_factory=list)
    """Only these document ids are mirrored."""
    filter: str = ""
    """A design-document filter `ddoc/name`, run by the server."""
    filter_params: dict[str, str] = field(default_factory=dict)
    """Query parameters passed to the design-document filter."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra request headers (sse only)."""
    events: dict[str, Any] = field(default_factory=dict)
    """How SSE event payloads become changes (sse only; see README)."""
    min_reconnect: float = 0.1
    """Lower bound on an SSE server's `retry:` delay, in seconds."""
    max_reconnect: float = 60.0
    """Upper bound on an SSE server's `retry:` delay, in seconds."""
    marker_interval: float = 30.0
    """Seconds between checks, while following, that the database still holds the bridge's `_local` marker."""

    def __post_init__(self) -> None:
        if self.kind not in ("couchdb", "sse"):
            raise ConfigError(f"[source] kind must be 'couchdb' or 'sse', got {self.kind!r}")
        _check_http_url("source", self.url)
        if self.kind == "couchdb" and not self.database:
            raise ConfigError("[source] database is required")
        if self.feed not in ("longpoll", "eventsource"):
            raise ConfigError(f"[source] feed must be 'longpoll' or 'eventsource', got {self.feed!r}")
        if self.catch_up_feed not in ("continuous", "normal"):
            raise ConfigError(f"[source] catch_up_feed must be 'continuous' or 'normal', got {self.catch_up_feed!r}")
        if self.page_size < 1 or self.page_bytes < 1:
            raise ConfigError("[source] page_size and page_bytes must be at least 1")
        if self.heartbeat <= 0 or self.connect_timeout <= 0 or self.read_timeout < 0:
            raise ConfigError("[source] heartbeat and connect_timeout must be positive, read_timeout >= 0")
        if self.read_timeout and self.read_timeout <= self.heartbeat:
            raise ConfigError("[source] read_timeout must be longer than the heartbeat")
        if sum(bool(x) for x in (self.selector, self.doc_ids, self.filter)) > 1:
            raise ConfigError("[source] choose one of selector, doc_ids and filter")
        if self.filter and not re.fullmatch(r"[^/]+/[^/]+", self.filter):
            raise ConfigError(f"[source] filter must look like 'ddoc/name', got {self.filter!r}")
        clash = sorted(set(self.filter_params) & _FEED_PARAMS)
        if clash:
            raise ConfigError(f"[source] filter_params cannot set the bridge's own feed parameters {clash}")
        if not 0 < self.min_reconnect <= self.max_reconnect:
            raise ConfigError("[source] need 0 < min_reconnect <= max_reconnect")
        if self.marker_interval <= 0:
            raise ConfigError("[source] marker_interval must be positive")

    @property
    def effective_read_timeout(self) -> float:
        """The stall timeout: longer than the heartbeat, so a live feed never trips it."""
        return self.read_timeout or 3 * self.heartbeat

    def identity(self) -> dict[str, Any]:
        """What decides which changes this source yields (no credentials), for the fingerprint."""
        return {
            "kind": self.kind,
            "url": scrub_url(self.url).rstrip("/"),
            "database": self.database,
            "selector": self.selector,
            "doc_ids": sorted(self.doc_ids),
            "filter": self.filter,
            "filter_params": self.filter_params,
            "events": self.events,
        }


@dataclass(frozen=True)
class PandaSettings:
    """Where the rows go."""

    url: str = "http://127.0.0.1:8000"
    """PANDA root; the API lives under /api/1.0/."""
    email: str = ""
    """The PANDA user the bridge writes as."""
    api_key: str = field(default="", repr=False)
    """That user's API key (prefer the PANDA_API_KEY environment variable)."""
    dataset: str = ""
    """The dataset slug."""
    create_dataset: bool = False
    """Create the dataset with the mapping's columns when it does not exist."""
    dataset_name: str = ""
    """The name given to a dataset the bridge creates; defaults to the slug."""
    timeout: float = 30.0
    """Seconds to wait for any PANDA response."""
    max_concurrent_requests: int = 1
    """Requests in flight at once to this PANDA, shared by every pipeline of the process writing to it."""

    def __post_init__(self) -> None:
        _check_http_url("panda", self.url)
        parts = urlsplit(self.url)
        if parts.query or parts.fragment:
            raise ConfigError(f"[panda] url must be http(s)://host[:port][/prefix], got {scrub_url(self.url)!r}")
        if parts.username or parts.password:
            raise ConfigError("[panda] url must not hold credentials; use the email and API key settings")
        if not self.email:
            raise ConfigError("[panda] email is required")
        # The API key is required by load_settings, for the commands that reach PANDA (see `secrets` there).
        for name, value in (("email", self.email), ("api_key", self.api_key)):  # they travel as headers
            if value and (value != value.strip() or not value.isascii() or not value.isprintable()):
                raise ConfigError(f"[panda] {name} must be printable ASCII without surrounding spaces")
        if not self.dataset:
            raise ConfigError("[panda] dataset is required")
        # contract 16.10: never build /api/1.0/dataset/ without a slug; "schema" is Tastypie's (contract 1)
        if not _SLUG.fullmatch(self.dataset) or self.dataset == "schema":
            raise ConfigError(f"[panda] dataset must be a slug of letters, digits, _ and -, got {self.dataset!r}")
        if self.timeout <= 0:
            raise ConfigError("[panda] timeout must be positive")
        if self.max_concurrent_requests < 1:
            raise ConfigError("[panda] max_concurrent_requests must be at least 1")


@dataclass(frozen=True)
class MappingSettings:
    """How a document becomes a row."""

    columns: list[str] = field(default_factory=list)
    """PANDA columns, in order."""
    external_id: str = "_id"
    """Document field path giving the external_id; `_id` uses the document id."""
    external_id_template: str = ""
    """Instead of a field, a template of fields such as `{type}-{number}`."""
    fields: dict[str, str] = field(default_factory=dict)
    """Column -> dotted document field path; a column not listed reads the same-named field."""
    external_id_prefix: str = ""
    """Text put before every encoded external_id, e.g. `r_`: makes this dataset's PANDA row keys distinct
    from those of a dataset whose slug is this one's plus `-...` (see README, "Datasets that share keys")."""

    def __post_init__(self) -> None:
        if not self.columns:
            raise ConfigError("[mapping] columns is required: the PANDA columns, in order")
        for name in self.columns:
            if not isinstance(name, str) or not name or "," in name or name != name.strip():
                raise ConfigError(f"[mapping] column names must be non-empty, without commas or edge spaces: {name!r}")
        if len(set(self.columns)) != len(self.columns):
            raise ConfigError("[mapping] columns must be distinct")
        unknown = sorted(set(self.fields) - set(self.columns))
        if unknown:
            raise ConfigError(f"[mapping.fields] names columns that are not in [mapping] columns: {unknown}")
        if not self.external_id:
            raise ConfigError("[mapping] external_id must name a field path")
        if self.external_id_prefix and not _ID_PREFIX.fullmatch(self.external_id_prefix):
            # it must not start with '-' (Solr's prohibit operator) and its last '_' or '-' keeps any id
            # from becoming AND, OR or NOT, so every prefixed id stays one PANDA can also delete
            raise ConfigError("[mapping] external_id_prefix must be ASCII letters, digits, '_' and '-', not "
                              f"start with '-', and end with '_' or '-', got {self.external_id_prefix!r}")

    def field_paths(self) -> tuple[str, ...]:
        """The document field path of each column, in column order."""
        return tuple(self.fields.get(column, column) for column in self.columns)


@dataclass(frozen=True)
class CheckpointSettings:
    """Where the bridge keeps its state: the last acknowledged seq and what was sent."""

    path: str = "state/bridge.checkpoint"
    """The state file (SQLite)."""
    deadletter: str = ""
    """The dead-letter file (JSON lines); defaults to the state file's path + `.deadletter.jsonl`."""
    group_records: int = 10_000
    """While the feed is not caught up, the records of acknowledged batches are written to the state file
    together, up to this many documents' (core/grouping.py); 0 writes every batch on its own."""
    group_seconds: float = 1.0
    """Seconds at most that acknowledged batches wait to be written to the state file together."""

    def __post_init__(self) -> None:
        if self.group_records < 0 or self.group_seconds < 0:
            raise ConfigError("[checkpoint] group_records and group_seconds must not be negative")

    @property
    def deadletter_path(self) -> Path:
        return Path(self.deadletter or self.path + ".deadletter.jsonl")


DEFAULT_MAX_REQUEST_BYTES = 4_000_000
"""The default cap on one bulk PUT body (BatchSettings.max_request_bytes)."""


@dataclass(frozen=True)
class BatchSettings:
    """When a batch is due: whichever limit comes first."""

    max_changes: int = 1000
    """Documents per batch while the sink keeps up (and as soon as the feed is caught up)."""
    max_bytes: int = 4_000_000
    """Approximate feed bytes per batch."""
    max_age: float = 0.5
    """Seconds a change may wait for its batch."""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    """Bytes per bulk PUT body at most; a batch's rows go in as many PUTs as that takes (a single row
    bigger than this goes alone)."""
    grow_to: int = 20_000
    """Documents per batch at most while PANDA is slow and the backlog large (core/sizing.py); at or below
    max_changes, batches stay fixed at max_changes."""

    def __post_init__(self) -> None:
        if self.max_changes < 1 or self.max_bytes < 1 or self.max_age <= 0 or self.max_request_bytes < 1:
            raise ConfigError("[batch] max_changes, max_bytes, max_age and max_request_bytes must be positive")


@dataclass(frozen=True)
class RetrySettings:
    """How transient faults are retried (see retry.py); every adapter takes one."""

    initial_delay: float = 0.5
    """Seconds before the first retry (the base of the exponential schedule)."""
    max_delay: float = 30.0
    """The cap on any one wait, in seconds."""
    max_tries: int | None = field(default=None, metadata=NOT_A_KEY)
    """Give up and re-raise after this many attempts; None retries until stopped. Not a configuration
    key: only the start-up checks use it (STARTUP_RETRY)."""

    def __post_init__(self) -> None:
        if self.initial_delay <= 0 or self.max_delay < self.initial_delay:
            raise ConfigError("[retry] need 0 < initial_delay <= max_delay")
        if self.max_tries is not None and self.max_tries < 1:
            raise ConfigError("[retry] max_tries must be at least 1")


STARTUP_RETRY = RetrySettings(initial_delay=0.2, max_delay=1.0, max_tries=3)
"""The start-up checks' few quick tries: a server that cannot be reached then is a configuration error."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "30m", "6h" or "1d"; "" and "0" mean off (0.0). Raises ConfigError."""
    found = _DURATION.fullmatch(text.strip())
    if text.strip() == "":
        return 0.0
    if found is None:
        raise ConfigError(f"[verify] every must look like 90s, 30m, 6h or 1d, got {text!r}")
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2)]


@dataclass(frozen=True)
class VerifySettings:
    """Periodic reconciliation inside `bridge run` (off by default)."""

    every: str = ""
    """How often to verify while following, e.g. `6h`; empty (the default) turns it off."""
    repair: bool = False
    """Repair the differences each periodic verify finds (rows the bridge never wrote are only listed)."""
    settle: float = 1.0
    """Seconds to wait before reading the ids of a difference again, so changes in flight are not drift."""

    def __post_init__(self) -> None:
        if parse_duration(self.every) < 0 or self.settle < 0:
            raise ConfigError("[verify] every and settle must not be negative")

    @property
    def interval(self) -> float:
        """Seconds between periodic verifies; 0.0 when they are off."""
        return parse_duration(self.every)


@dataclass(frozen=True)
class HttpSettings:
    """The operating endpoint: /metrics, /healthz and /readyz."""

    listen: str = ""
    """`host:port` to serve on (e.g. 127.0.0.1:9464; `[::1]:9464` for IPv6); empty serves nothing."""

    def __post_init__(self) -> None:
        if self.listen and not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+):\d{1,5}", self.listen):
            raise ConfigError(f"[http] listen must be host:port (e.g. 127.0.0.1:9464), got {self.listen!r}")


@dataclass(frozen=True)
class LogSettings:
    """How log lines are written (to stderr)."""

    format: str = "text"
    """`text` (one readable line per event) or `json` (one JSON object per line, for a log shipper)."""

    def __post_init__(self) -> None:
        if self.format not in ("text", "json"):
            raise ConfigError(f"[log] format must be 'text' or 'json', got {self.format!r}")


@dataclass(frozen=True)
class Settings:
    """Everything one pipeline needs."""

    source: SourceSettings
    panda: PandaSettings
    mapping: MappingSettings
    checkpoint: CheckpointSettings
    batch: BatchSettings
    retry: RetrySettings
    verify: VerifySettings = field(default_factory=VerifySettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint belongs to: source, filter, dataset and mapping, never credentials."""
        return {
            "source": self.source.identity(),
            "panda": {"url": scrub_url(self.panda.url).rstrip("/"), "dataset": self.panda.dataset},
            "mapping": {
                "columns": self.mapping.columns,
                "paths": list(self.mapping.field_paths()),
                "external_id": self.mapping.external_id_template or self.mapping.external_id,
                # only when set, so checkpoints saved before the prefix existed still match
                **({"external_id_prefix": self.mapping.external_id_prefix} if self.mapping.external_id_prefix else {}),
            },
        }

    def fingerprint_hash(self) -> str:
        text = json.dumps(self.fingerprint(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
