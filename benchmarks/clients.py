"""The measured programs other than the bridge, each run in a fresh process: `clients.py KIND [options]`.

  source  read the whole feed in pages (feed=normal, include_docs, limit=--page) and parse it with orjson
  sink    bulk PUT the rows in --rows (1000 per request) into the emulator over one keep-alive session
  delete  DELETE each row in --rows, one request each (PANDA has no bulk delete)
  reader  the bridge's own reader stage alone: CouchSource pages decoded into Changes, then dropped
  follower  the source's own follow latency: prints `ready` once it knows the feed's end, then follows it with
          feed=longpoll (include_docs, as the bridge does) until it saw --expect rows, and writes to --out each
          row's delay from its document's `written_at` (s, set by the writer) to the answer parsed (ms)
  peer    couchdb-python 1.2 `db.changes(feed='continuous', include_docs=True, since=0)` until --expect rows
  peer-ibm  ibmcloudant's `ChangesFollower(include_docs=True).start_one_off()` from since 0; it ends when
          CouchDB says `pending: 0`, or after --limit rows (its own `limit` option: PouchDB Server sends no
          `pending`, so there one-off mode never ends by itself); fails unless it read --expect rows
Each prints one JSON line: {"rows": n, "work_s": seconds from the first request to the last answer}.
Every kind exits with status 124 after --deadline seconds, so no run can hang the benchmark.
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


def follower(args: argparse.Namespace) -> int:
    session = requests.Session()
    session.headers.update({"Accept": "application/json", "Accept-Encoding": "identity"})
    url = "%s/%s/_changes" % (args.url.rstrip("/"), quote(args.db, safe=""))
    end = session.get(url, params={"since": "now"}, timeout=(10, 120))  # no rows, and the current last_seq
    end.raise_for_status()
    since = orjson.loads(end.content)["last_seq"]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    delays: list[float] = []
    rows = 0
    while rows < args.expect:
        params = {"feed": "longpoll", "include_docs": "true", "limit": str(args.page), "since": str(since),
                  "heartbeat": "10000"}
        response = session.get(url, params=params, timeout=(10, 120))
        response.raise_for_status()
        page = orjson.loads(response.content)
        now = time.time()
        for row in page["results"]:
            written = (row.get("doc") or {}).get("written_at")
            if written is not None:
                delays.append((now - written) * 1000)
        rows += len(page["results"])
        since = page["last_seq"]
    with open(args.out, "wb") as out:
        out.write(orjson.dumps(delays))
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


def peer_ibm(args: argparse.Namespace) -> int:
    from urllib.parse import unquote, urlsplit

    from ibm_cloud_sdk_core.authenticators import BasicAuthenticator, NoAuthAuthenticator
    from ibmcloudant.cloudant_v1 import CloudantV1
    from ibmcloudant.features.changes_follower import ChangesFollower

    parts = urlsplit(args.url)  # the SDK takes credentials from an authenticator, not from the URL
    if parts.username is not None:
        authenticator = BasicAuthenticator(unquote(parts.username), unquote(parts.password or ""))
    else:
        authenticator = NoAuthAuthenticator()  # PouchDB Server in the benchmark: admin party
    service = CloudantV1(authenticator=authenticator)  # its default timeouts: 60 s connect, 150 s read
    service.set_service_url(parts._replace(netloc="%s:%d" % (parts.hostname, parts.port)).geturl().rstrip("/"))
    options: dict[str, object] = {"db": args.db, "include_docs": True}
    if args.limit:
        options["limit"] = args.limit
    # error_tolerance=0: an error ends the run (a failed run), where the default retries for ever
    follower = ChangesFollower(service, error_tolerance=0, **options)
    rows = sum(1 for _change in follower.start_one_off())
    if args.expect and rows != args.expect:
        raise SystemExit("ChangesFollower read %d rows, expected %d" % (rows, args.expect))
    return rows


def _exit_at_deadline(seconds: float, kind: str) -> None:
    import os
    import threading

    def expire() -> None:
        sys.stderr.write("clients.py %s: still running after the %.0f s deadline; exiting\n" % (kind, seconds))
        sys.stderr.flush()
        os._exit(124)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(_KINDS))
    parser.add_argument("--url", help="CouchDB server root")
    parser.add_argument("--db", help="database")
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--panda", help="PANDA (emulator) root")
    parser.add_argument("--dataset", default="people")
    parser.add_argument("--rows", help="JSON file: [[external_id, [cells...]], ...]")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=0, help="peer-ibm: ChangesFollower's limit option")
    parser.add_argument("--out", help="follower: the JSON file its delays (ms) are written to")
    parser.add_argument("--deadline", type=float, default=600.0, help="exit with status 124 after this many s")
    args = parser.parse_args()
    _exit_at_deadline(args.deadline, args.kind)
    started = time.perf_counter()
    rows = _KINDS[args.kind](args)
    sys.stdout.write(orjson.dumps({"rows": rows, "work_s": time.perf_counter() - started}).decode() + "\n")
    sys.stdout.flush()
    return 0


_KINDS = {"source": source, "sink": sink, "delete": delete, "reader": reader, "follower": follower,
          "peer": peer, "peer-ibm": peer_ibm}

if __name__ == "__main__":
    raise SystemExit(main())
