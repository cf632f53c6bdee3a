"""`bridge verify`: streams the source, PANDA's rows and the record into a scratch database, diffs them there,
then reads the ids concerned again so that changes in flight beside a running bridge are not reported.

Order: the source first (`_changes` from 0 with the pipeline's filter, as the bridge reads it), then the
listing of the dataset, then the record. Each difference is then judged again from fresh reads: the source's
changes since the first read (so every document that changed meanwhile is read again), PANDA's row by id
(contract 16.11: the trustworthy read), and the record's owner of that id. A difference whose document or
row is still changing is read again after `settle` seconds, a few times; one still changing after that is
counted as in flight, not as a difference.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import requests

from bridge.config.settings import Settings
from bridge.core import external_id as ids
from bridge.core.filtering import DocFilter, compile_selector
from bridge.core.mapping import RowMapper
from bridge.core.planning import row_hash
from bridge.errors import ConfigError, DecodeError, MappingError, StopRequested
from bridge.model import Position, Seq
from bridge.sink.panda import LIST_LIMIT, PandaSink
from bridge.source.couchdb import CouchSource
from bridge.source.decode import decode_row
from bridge.state.checkpoint import StateStore
from bridge.verify.compare import EXTRA_OWNED, EXTRA_UNOWNED, KINDS, MISSING, STALE, judge, panda_row_hash
from bridge.verify.progress import Progress
from bridge.verify.report import Report
from bridge.verify.scratch import Candidate, Scratch

__all__ = ["Verifier", "verify"]

logger = logging.getLogger(__name__)

_SOURCE_CHUNK = 1000
_ROUNDS = 5


class Verifier:
    """One verify of one pipeline; keeps its scratch database open until `close`, so repair can use it."""

    def __init__(self, settings: Settings, stop: threading.Event, *, examples: int = 10,
                 settle: float | None = None, rounds: int = _ROUNDS, scratch_dir: Path | None = None,
                 panda_session: requests.Session | None = None) -> None:
        source = settings.source
        if source.kind != "couchdb":
            raise ConfigError("verify, repair and rebuild need a CouchDB source: an event stream cannot be re-read")
        if examples < 0:
            raise ConfigError("--examples must not be negative")
        self.settings, self.stop = settings, stop
        self.examples, self.rounds = examples, rounds
        self.settle = settings.verify.settle if settle is None else settle
        retry = settings.retry
        self.mapper = RowMapper(settings.mapping)
        self.filter = DocFilter(selector=compile_selector(source.selector) if source.selector else None,
                                doc_ids=frozenset(source.doc_ids) if source.doc_ids else None)
        self.couch = CouchSource(source, retry=retry, stop=stop)
        """The feed as the bridge reads it (with its server-side filter)."""
        self._everything = CouchSource(dataclasses.replace(source, filter="", filter_params={}, doc_ids=[]),
                                       retry=retry, stop=stop)
        """The feed without a server-side filter: which documents changed at all."""
        self.sink = PandaSink(settings.panda, retry=retry, stop=stop, width=len(settings.mapping.columns),
                              session=panda_session)
        """PANDA, through `panda_session` when given (a gated one inside `bridge run`: run/gate.py)."""
        path = Path(settings.checkpoint.path)
        self.store = StateStore(path) if path.exists() else None
        self.scratch = Scratch(scratch_dir)
        self._unmappable = 0
        self._notes: list[str] = []

    def close(self) -> None:
        self.couch.close()
        self._everything.close()
        self.sink.close()
        if self.store is not None:
            self.store.close()
        self.scratch.close()

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise StopRequested("stop requested during verify")

    # -- reading the three sides -------------------------------------------------------------------------

    def read_source(self, source: CouchSource, since: Seq | None, *, moved: bool = False,
                    drop_all: bool = False) -> Seq | None:
        """Read `source`'s changes after `since` into the scratch; returns the position reached.

        `moved` notes every document read as changed; `drop_all` takes every document read as not wanted (the
        first of two reads when the filter runs on the server: the filtered read then adds back those it lets
        through). Undecodable rows are skipped: the bridge dead-letters them, they are no row.
        """
        progress = Progress("source changes")
        position = since
        rows: list[tuple[str, str, int]] = []
        dropped: list[str] = []
        unmapped: list[str] = []

        def flush() -> None:
            self.scratch.set_source(rows, dropped, unmapped)
            if moved:
                self.scratch.add_moved([doc_id for _eid, doc_id, _h in rows] + dropped + unmapped)
            progress.add(len(rows) + len(dropped) + len(unmapped))
            rows.clear()
            dropped.clear()
            unmapped.clear()

        for raw in source.changes(since, follow=False):
            if isinstance(raw, Position):
                position = raw.seq
                continue
            try:
                change = decode_row(raw[0])  # (row, size): the size matters to batching only
            except DecodeError:
                continue
            if drop_all or change.deleted or change.doc is None or not self.filter.accepts(change.doc_id, change.doc):
                dropped.append(change.doc_id)
            else:
                try:
                    rows.append((self.mapper.external_id(change), change.doc_id, row_hash(self.mapper.row(change.doc))))
                except MappingError:
                    unmapped.append(change.doc_id)
            if len(rows) + len(dropped) + len(unmapped) >= _SOURCE_CHUNK:
                flush()
                self._check_stop()
        flush()
        progress.done()
        return position

    def read_source_since(self, since: Seq | None) -> Seq | None:
        """Read again every document that changed after `since`, noting them as moved."""
        if self.settings.source.filter:
            # A design-document filter runs on the server: a document that stopped passing it is absent from
            # the filtered feed, so the unfiltered feed says which changed and the filtered one which pass.
            reached = self.read_source(self._everything, since, moved=True, drop_all=True)
            self.read_source(self.couch, since, moved=True)
            return reached
        return self.read_source(self._everything, since, moved=True)

    def read_panda(self) -> None:
        """List every row of the dataset into the scratch (see PandaSink.list_page for why it is safe)."""
        progress = Progress("PANDA rows")
        offset, total = 0, 0
        while True:
            self._check_stop()
            page, total = self.sink.list_page(offset, LIST_LIMIT)
            self.scratch.add_panda([(eid, panda_row_hash(data)) for eid, data in page])
            progress.add(len(page), total)
            offset += LIST_LIMIT
            if offset >= total:
                break
        progress.done()
        listed = self.scratch.total("panda")
        if listed != total:
            self._notes.append(f"the listing gave {listed} distinct rows while PANDA counted {total}: the dataset "
                               "changed while it was read; the differences were read again by id, but an extra "
                               "row skipped by the listing is only found by the next verify")

    def read_record(self) -> None:
        """The rows the bridge wrote: its record, and rows noted as about to be written (a crash may have)."""
        if self.store is None:
            return
        self.scratch.add_owned([(eid, doc_id) for eid, doc_id in self.store.noted_external_ids().items()])
        for chunk in self.store.records():
            self.scratch.add_owned([(eid, doc_id) for doc_id, eid, _hash in chunk])

    # -- judging -----------------------------------------------------------------------------------------

    def run(self) -> Report:
        """Verify once; raises the adapters' BridgeErrors (a missing dataset, refused credentials...)."""
        started, wall = time.monotonic(), time.time()
        self.sink.ensure_dataset(self.settings.mapping.columns, create=False)
        position = self.read_source(self.couch, None)
        self._unmappable = self.scratch.total("unmapped")
        self.read_panda()
        self.read_record()
        self.scratch.find_differences()
        found = self.scratch.total("diff")
        logger.info("verify: %d candidate difference(s); reading their ids again", found)
        self.recheck(position)
        report = Report(
            counts=self.scratch.counts(),
            examples={kind: self._examples(kind) for kind in KINDS},
            source_rows=self.scratch.total("source"),
            panda_rows=self.scratch.total("panda"),
            recorded=self.scratch.total("owned"),
            in_flight=sum(self.scratch.counts(moving=True).values()),
            unmappable=self._unmappable,
            finished_at=time.time(),
            seconds=time.monotonic() - started,
            notes=list(self._notes),
        )
        logger.info("verify of %s (started %s): %s", self.settings.panda.dataset,
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall)),
                    "in sync" if report.in_sync else ", ".join(f"{k} {v}" for k, v in report.counts.items() if v))
        return report

    def recheck(self, position: Seq | None) -> None:
        """Judge every difference again from fresh reads of both sides, until none is still changing."""
        for _round in range(self.rounds):
            if self.scratch.total("diff") == 0:
                return
            if self.stop.wait(self.settle):
                raise StopRequested("stop requested during verify")
            self.scratch.clear_moved()
            position = self.read_source_since(position)
            noted = self.store.noted_external_ids() if self.store is not None else {}
            for chunk in self.scratch.candidates():
                self._check_stop()
                self._judge(chunk, noted)
            if not self.scratch.is_moving():
                return

    def _judge(self, chunk: list[Candidate], noted: dict[str, str]) -> None:
        eids = [eid for eid, _kind, _doc, _hash in chunk]
        owners = self.store.owners(eids) if self.store is not None else {}
        expected = self.scratch.expected(eids)
        doc_of = {eid: (expected[eid][0] if eid in expected else owners.get(eid) or noted.get(eid) or doc_id
                        or self.decoded(eid)) for eid, _kind, doc_id, _hash in chunk}
        moved = self.scratch.moved_among([doc_id for doc_id in doc_of.values() if doc_id])
        resolved: list[str] = []
        updated: list[tuple[str, str | None, int | None, bool, str]] = []
        for eid, _kind, _doc_id, listed in chunk:
            try:
                data = self.sink.get_row(eid)
                found = None if data is None else panda_row_hash(data)
            except ValueError:
                found = listed  # an id no URL can carry: the listing is all there is
            want = expected.get(eid)
            kind = judge(want[1] if want else None, found, eid in owners or eid in noted)
            if kind is None:
                resolved.append(eid)
                continue
            doc_id = doc_of[eid]
            updated.append((eid, doc_id, found, (doc_id in moved) or found != listed, kind))
        self.scratch.settle(resolved, updated)

    def decoded(self, external_id: str) -> str | None:
        """The document id an external_id encodes, where external_ids are encoded document ids."""
        if not self.mapper.uses_doc_id:
            return None
        try:
            return ids.decode(external_id)
        except ValueError:
            return None

    def _examples(self, kind: str) -> list[dict[str, Any]]:
        """Up to N settled differences of `kind` with the cells on each side."""
        if not self.examples:
            return []
        picked = self.scratch.settled_examples(kind, self.examples)
        docs = self.couch.get_docs([doc_id for _eid, doc_id in picked if doc_id]) if kind in (MISSING, STALE) else {}
        out = []
        for eid, doc_id in picked:
            example: dict[str, Any] = {"external_id": eid, "doc_id": doc_id}
            if kind in (STALE, EXTRA_OWNED, EXTRA_UNOWNED):
                example["panda"] = self._row_or_none(eid)
            if kind in (MISSING, STALE):
                doc = docs.get(doc_id) if doc_id else None
                example["source"] = list(self.mapper.row(doc)) if doc is not None else None
            out.append(example)
        return out

    def _row_or_none(self, external_id: str) -> Any:
        try:
            return self.sink.get_row(external_id)
        except ValueError:
            return None

    def differences(self, kinds: Iterable[str]) -> Iterator[list[Candidate]]:
        """The settled differences of these kinds, in chunks (for repair); in-flight ones are left alone."""
        return self.scratch.candidates(500, kinds, settled=True)


def verify(settings: Settings, stop: threading.Event, *, examples: int = 10) -> Report:
    """Verify once and close everything; the Report says what was found."""
    verifier = Verifier(settings, stop, examples=examples)
    try:
        return verifier.run()
    finally:
        verifier.close()
