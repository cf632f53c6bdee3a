"""Builds a pipeline from settings, checks both ends before anything is written, and runs it.

Start-up order: the checkpoint is read and matched to these settings; the source and PANDA are reached
(a failure here is a configuration error, exit 2); PANDA's datasets are listed, and a slug that shares row
keys with this one stops the bridge (core/keyspace.py); the dataset is fetched or created and its columns
compared; the database marker is checked; only then does the feed start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

from bridge.config.settings import Settings, scrub_url
from bridge.core.filtering import DocFilter, compile_selector
from bridge.core.grouping import CommitGroup
from bridge.core.keyspace import key_clashes
from bridge.core.mapping import RowMapper
from bridge.errors import CheckpointMismatch, ConfigError, TransientError
from bridge.model import Batch, Change, Seq
from bridge.ops.dryrun import DryDeadLetters, DryRunSink
from bridge.ops.events import NO_EVENTS, Events
from bridge.retry import Retrying, startup_retries
from bridge.run.delivery import Delivery, RunStats
from bridge.run.pipeline import run
from bridge.run.reader import Decode, Source
from bridge.sink.panda import PandaSink
from bridge.source.couchdb import CouchSource, writes_since
from bridge.source.decode import decode_row
from bridge.source.sse import SseFeed, SseSource
from bridge.source.sse_parser import SseEvent, SseEventSpec, decode_couchdb_event, decode_sse_event, event_spec
from bridge.state.checkpoint import Checkpoint, StateStore
from bridge.state.deadletter import DeadLetter, DeadLetterFile
from bridge.state.snapshot import SnapshotStore

__all__ = ["parse_since", "Bridge", "check_key_space"]

logger = logging.getLogger(__name__)

def parse_since(text: str) -> str | Seq | None:
    """`last` and `now` stay words; `0` means the beginning (None); anything else is a literal seq."""
    if text in ("last", "now"):
        return text
    if text == "0":
        return None
    return Seq(int(text)) if text.isdigit() else Seq(text)


def decode_couch_item(raw: Any, size: int) -> Change | None:
    """A CouchDB source yields `_changes` rows while catching up and, with feed=eventsource, events after."""
    if isinstance(raw, SseEvent):
        return decode_couchdb_event(raw, size)
    return decode_row(raw, size)


def sse_decoder(spec: SseEventSpec) -> Decode:
    """The decoder of a generic event stream's items, for events shaped as `spec` says."""

    def decode(event: SseEvent, size: int) -> Change | None:
        return decode_sse_event(event, spec, size)

    return decode


def _event_seq(event: SseEvent) -> Seq | None:
    return Seq(event.id) if event.id else None


class Bridge:
    """The adapters of one pipeline, opened together and closed together."""

    def __init__(self, settings: Settings, stop: threading.Event, *, events: Events = NO_EVENTS,
                 dry_run: bool = False, panda_session: requests.Session | None = None) -> None:
        """`events` is told what happens (metrics); `dry_run` reads as usual and writes nothing anywhere;
        `panda_session` is the session PANDA is reached through (run/gate.py's, when pipelines share a PANDA)."""
        self.settings = settings
        self.stop = stop
        self.events = events
        self.dry_run = dry_run
        path = Path(settings.checkpoint.path)
        self.store = SnapshotStore(path) if dry_run else StateStore(path)
        self.deadletters = (DryDeadLetters if dry_run else DeadLetterFile)(settings.checkpoint.deadletter_path)
        self.mapper = RowMapper(settings.mapping)
        source = settings.source
        self.filter = DocFilter(
            selector=compile_selector(source.selector) if source.selector else None,
            doc_ids=frozenset(source.doc_ids) if source.doc_ids else None,
        )
        self.couch: CouchSource | None = None
        self.source_info: Mapping[str, Any] = {}
        """The CouchDB database's info as read at start-up."""
        self.source: Source
        self.decode: Decode
        if source.kind == "couchdb":
            self.couch = CouchSource(source, retry=settings.retry, stop=stop, events=events)
            self.source, self.decode = self.couch, decode_couch_item
        else:
            spec = _event_spec(source.events)
            stream = SseSource(
                source.url, headers=source.headers, connect_timeout=source.connect_timeout,
                read_timeout=source.effective_read_timeout, retry=settings.retry, stop=stop,
                min_reconnect=source.min_reconnect, max_reconnect=source.max_reconnect, events=events,
            )
            self.source = SseFeed(stream, seq_of=_event_seq)
            self.decode = sse_decoder(spec)
        self._handed_over = False
        """True once a run took the source and the sink (it closes them)."""
        sink = PandaSink(settings.panda, retry=settings.retry, stop=stop, width=len(settings.mapping.columns),
                         events=events, max_request_bytes=settings.batch.max_request_bytes, session=panda_session)
        self.sink: PandaSink | DryRunSink = DryRunSink(sink) if dry_run else sink

    def close(self) -> None:
        """Close what is still open: a run closes the source and the sink itself, from the threads using them."""
        if not self._handed_over:
            self.source.close()
            self.sink.close()
        self.store.close()

    def prepare(self) -> Checkpoint | None:
        """Check the checkpoint and both ends, creating the dataset if allowed, before anything is written.

        The checks use the adapters the run will use, in their start-up mode: a server that cannot be
        reached within a few quick tries is a configuration error (exit 2); the patient retries are for
        faults that start once the bridge is running.
        """
        adapters: list[Retrying] = [self.sink] if self.couch is None else [self.couch, self.sink]
        try:
            with startup_retries(*adapters):
                return self._prepare()
        except TransientError as exc:
            raise ConfigError(f"cannot start: {exc}") from None

    def _prepare(self) -> Checkpoint | None:
        settings, couch, sink = self.settings, self.couch, self.sink
        saved = self.store.load()
        if saved is not None:
            self.store.claim(settings.fingerprint())
        if couch is not None:
            try:
                info = couch.info()
            except TransientError as exc:
                raise ConfigError(f"cannot start: reading CouchDB database {settings.source.database!r} at "
                                  f"{scrub_url(settings.source.url)} failed: {exc}") from None
            self.source_info = info
            logger.info("source: database %r, %s documents, update_seq %s",
                        settings.source.database, info.get("doc_count"), info.get("update_seq"))
            couch.check_filter()
        try:
            check_key_space(sink, settings)  # before the dataset may be created
            sink.ensure_dataset(settings.mapping.columns, create=settings.panda.create_dataset,
                                name=settings.panda.dataset_name or None)
        except TransientError as exc:
            where = scrub_url(settings.panda.url)
            raise ConfigError(f"cannot start: reaching PANDA at {where} failed: {exc}") from None
        row_count = sink.dataset_info().get("row_count") or 0
        if saved is None:
            marker = self._mark(None)
            self.store.claim(settings.fingerprint(), marker=marker, complete=row_count == 0)
            return None
        if saved.source_marker is not None:
            marker = self._mark(saved.source_marker)
            if marker != saved.source_marker:
                raise CheckpointMismatch(
                    f"database {settings.source.database!r} was deleted and recreated (or its marker "
                    f"_local/bridge-{settings.fingerprint_hash()} removed) since the checkpoint {self.store.path} "
                    "was saved, so its seq means nothing there. Run `bridge checkpoint reset`, then start again."
                )
        elif couch is not None:
            logger.warning("the checkpoint %s holds no marker of database %r (the bridge could not write one): "
                           "it cannot detect that the database was deleted and recreated, between runs or while "
                           "it follows; a deleted database is still noticed", self.store.path,
                           settings.source.database)
        return saved

    def _mark(self, expected: str | None) -> str | None:
        """Check or write the database marker; the same source then watches it while it follows."""
        if self.couch is None or (self.dry_run and expected is None):
            return None  # a dry run reads the marker it is given but never writes one
        return self.couch.ensure_marker(self.settings.fingerprint_hash(), expected)

    def resolve_since(self, since: str | Seq | None, saved: Checkpoint | None) -> Seq | None:
        if since == "last":
            if saved is None or saved.seq is None:
                logger.info("no checkpoint at %s: starting from the beginning of the feed", self.store.path)
                return None
            logger.info("resuming after seq %s from %s", saved.seq, self.store.path)
            return saved.seq
        if since == "now":
            if self.couch is None:
                logger.info("starting where the event stream starts without a Last-Event-ID")
                return None
            seq = self.couch.current_seq()
            logger.info("starting at the current end of the feed, seq %s", seq)
            return seq
        assert not isinstance(since, str)
        logger.info("starting after seq %s as asked", since if since is not None else 0)
        return since

    def run(self, since: str | Seq | None, *, follow: bool, on_start: Callable[[], None] | None = None) -> RunStats:
        """Prepare, then mirror from `since` until caught up (follow False) or until stopped.

        `on_start` is called once the start-up checks passed, just before the pipeline starts.
        """
        if not follow and self.couch is None:
            raise ConfigError("an event stream has no end to catch up to: use `bridge run`, not `bridge once`")
        saved = self.prepare()
        start = self.resolve_since(since, saved)
        delivery = self.delivery(self.deadletters, delete_unknown=not self._record_complete(), grouped=True)
        logger.info("mirroring %s into PANDA dataset %r (%s)", self._source_name(), self.settings.panda.dataset,
                    "following" if follow else "until caught up")
        if on_start is not None:
            on_start()
        if self.couch is not None:  # an estimate from start-up's info: no request of its own
            self.events.behind(writes_since(self.source_info, start))
        self._handed_over = True
        try:
            stats = run(self.source, self.decode, delivery, self.settings.batch, since=start, follow=follow,
                        stop=self.stop)
        except BaseException as exc:
            self.events.stopped(exc)
            raise
        self.events.stopped(None)
        return stats

    def _record_complete(self) -> bool:
        """True when the record of sent rows covers the whole dataset (it was empty when the record began).

        Otherwise the dataset may hold rows the bridge never sent, so a tombstone of a document the record
        does not know still sends a delete.
        """
        state = self.store.load()
        return state.complete if state is not None else True

    def delivery(self, deadletters: DeadLetterFile, *, delete_unknown: bool, grouped: bool = False) -> Delivery:
        """The planning and delivery stage over this bridge's sink and state; `grouped` lets a run write the
        records of a backfill's batches to the state file together ([checkpoint] group_records)."""
        checkpoint = self.settings.checkpoint
        group = CommitGroup(checkpoint.group_records, checkpoint.group_seconds) if grouped else None
        return Delivery(self.sink, self.store, deadletters, self.mapper, self.filter.accepts,
                        delete_unknown=delete_unknown, events=self.events, group=group)

    def retry_dead_letters(self, letters: DeadLetterFile, entries: list[DeadLetter]) -> list[DeadLetter]:
        """Deliver the dead-lettered documents again as they are now in the source; returns what is still refused.

        The file is rewritten atomically with the entries still refused (and those without a document id,
        which cannot be looked up), so a crash part-way leaves the old file and a retry of a retry is harmless.
        """
        if self.couch is None:
            raise ConfigError(
                "`bridge deadletter retry` needs a source it can ask for a document's current version "
                "(CouchDB); an event stream cannot be re-read: have it send a new event for each document "
                "that `bridge deadletter list` shows"
            )
        retryable = [entry for entry in entries if entry.doc_id]
        kept = [entry for entry in entries if not entry.doc_id]
        if not retryable:
            logger.info("nothing to retry (%d entries without a document id are kept)", len(kept))
            return kept
        self.prepare()
        changes: dict[str, Change] = {}
        for entry in retryable:
            doc = self.couch.get_doc(entry.doc_id)
            changes[entry.doc_id] = Change(seq=None, doc_id=entry.doc_id, deleted=doc is None, doc=doc)
        fresh = DeadLetterFile(letters.path.with_name(letters.path.name + ".retry"))
        fresh.replace([])
        delivery = self.delivery(fresh, delete_unknown=not self._record_complete())
        delivery.deliver(Batch(changes=tuple(changes.values()), position=None), RunStats())
        still = list(fresh.entries())
        letters.replace(kept + still)
        fresh.path.unlink(missing_ok=True)
        logger.info("retried %d document(s): %d delivered, %d still refused", len(changes),
                    len(changes) - len(still), len(still))
        return kept + still

    def _source_name(self) -> str:
        source = self.settings.source
        if source.kind == "couchdb":
            return f"CouchDB database {source.database!r}"
        return f"event stream {scrub_url(source.url)}"


def check_key_space(sink: PandaSink | DryRunSink, settings: Settings) -> None:
    """ConfigError naming every other dataset whose rows can be this dataset's (PANDA's shared Solr keys)."""
    clashes = key_clashes(settings.panda.dataset, sink.dataset_slugs(), settings.mapping.external_id_prefix)
    if clashes:
        raise ConfigError(f"PANDA dataset {settings.panda.dataset!r} shares row keys with " + "; with ".join(clashes))


def _event_spec(events: dict[str, Any]) -> SseEventSpec:
    """[source.events] as an SseEventSpec; a key unknown or of the wrong type is a ConfigError naming it."""
    return event_spec(events)
