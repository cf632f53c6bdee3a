"""The measured programs other than the bridge, each run in a fresh process: `clients.py KIND [options]`.

  source  read the whole feed in pages (feed=normal, include_docs, limit=--page) and parse it with orjson
  sink    bulk PUT the rows in --rows (1000 per request) into the emulator over one keep-alive session
  delete  DELETE each row in --rows, one request each (PANDA has no bulk delete)
  reader  the bridge's own reader stage alone: CouchSource pages decoded into Changes, then dropped
  peer    couchdb-python 1.2 `db.changes(feed='continuous', include_docs=True, since=0)` until --expect rows
Each prints one JSON line: {"rows": n, "work_s": seconds from the first request to the last answer}.
"""

from __future__ import annotations

import argparse
import sys
import time
from urllib.parse import quote

import orjson
import requests

_PANDA_HEADERS = {
    "PANDA-EMAIL": "panda@pandaproject.net",
    "PANDA-API-KEY": "panda-demo-key",
    "Accept": "application/json",
    "Content-Type": "application/json",
}


def source(args: argparse.Namespace) -> int:
    session = requests.Session()
    session.headers.update({"Accept": "application/json", "Accept-Encoding": "identity"})
    url = "%s/%s/_changes" % (args.url.rstrip("/"), quote(args.db, safe=""))
    since: object = 0
    rows = 0
    while True:
        params = {"feed": "normal", "include_docs": "true", "limit": str(args.page), "since": str(since)}
        response = session.get(url, params=params, timeout=(10, 120))
        response.raise_for_status()
        page = orjson.loads(response.content)
        results = page["results"]
        rows += len(results)
        since = page["last_seq"]
        if len(results) < args.page:
            return rows


def _read_rows(path: str) -> list[list[object]]:
    with open(path, "rb") as rows:
        loaded: list[list[object]] = orjson.loads(rows.read())
        return loaded


def sink(args: argparse.Namespace) -> int:
    rows = _read_rows(args.rows)
    session = requests.Session()
    url = "%s/api/1.0/dataset/%s/data/" % (args.panda.rstrip("/"), args.dataset)
    sent = 0
    for first in range(0, len(rows), args.batch):
        batch = rows[first:first + args.batch]
        body = orjson.dumps({"objects": [{"external_id": eid, "data": data} for eid, data in batch]})
        response = session.put(url, data=body, headers=_PANDA_HEADERS, timeout=120)
        if response.status_code != 202:
            raise SystemExit("PUT answered %d: %s" % (response.status_code, response.text[:300]))
        sent += len(batch)
    return sent


def delete(args: argparse.Namespace) -> int:
    rows = _read_rows(args.rows)
    session = requests.Session()
    base = "%s/api/1.0/dataset/%s/data/" % (args.panda.rstrip("/"), args.dataset)
    for eid, _data in rows:
        response = session.delete("%s%s/" % (base, quote(str(eid), safe="")), headers=_PANDA_HEADERS, timeout=120)
        if response.status_code not in (204, 404):
            raise SystemExit("DELETE answered %d: %s" % (response.status_code, response.text[:300]))
    return len(rows)


def reader(args: argparse.Namespace) -> int:
    import threading

    from bridge.config.settings import RetrySettings, SourceSettings
    from bridge.model import Position
    from bridge.run.builder import decode_couch_item
    from bridge.source.couchdb import CouchSource

    settings = SourceSettings(url=args.url, database=args.db, page_size=args.page)
    source = CouchSource(settings, retry=RetrySettings(), stop=threading.Event())
    rows = 0
    for item in source.changes(None, follow=False):
        if not isinstance(item, Position) and decode_couch_item(*item) is not None:
            rows += 1
    source.close()
    return rows


def peer(args: argparse.Namespace) -> int:
    import couchdb  # couchdb-python 1.2: only the peer needs it

    db = couchdb.Server(args.url)[args.db]
    rows = 0
    for _row in db.changes(feed="continuous", include_docs=True, since=0):
        if "id" in _row:
            rows += 1
            if rows >= args.expect:
                break
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["source", "sink", "delete", "reader", "peer"])
    parser.add_argument("--url", help="CouchDB server root")
    parser.add_argument("--db", help="database")
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--panda", help="PANDA (emulator) root")
    parser.add_argument("--dataset", default="people")
    parser.add_argument("--rows", help="JSON file: [[external_id, [cells...]], ...]")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = {"source": source, "sink": sink, "delete": delete, "reader": reader, "peer": peer}[args.kind](args)
    sys.stdout.write(orjson.dumps({"rows": rows, "work_s": time.perf_counter() - started}).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
