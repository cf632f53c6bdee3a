"""A self-contained live demo: PouchDB Server and the PANDA emulator on loopback, sample documents mirrored,
then an update, a new document and a delete followed live. Run it with `./dev demo`.

It starts `bridge run` as a separate process (its log lines are the bridge's own), shows the PANDA rows as
they change, and stops the bridge with SIGTERM at the end. With a terminal attached it keeps following
until Ctrl-C, so you can write documents yourself; pass --no-wait to end after the scripted steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _local import ROOT, rows, show, start_bridge, stop_bridge, wait_for

from bridge.emulator import PandaEmulator
from tests.support.couchdb_server import PouchServer

DATABASE = "contributors"
DATASET = "contributors"
EMAIL = "panda@pandaproject.net"
COLUMNS = ["first_name", "last_name", "employer", "amount"]


def config_text(couch_url: str, panda_url: str, state: Path) -> str:
    return f"""\
[source]
url = "{couch_url}"
database = "{DATABASE}"
heartbeat = 2.0

[panda]
url = "{panda_url}"
email = "{EMAIL}"
dataset = "{DATASET}"
create_dataset = true

[mapping]
columns = {json.dumps(COLUMNS)}

[mapping.fields]
employer = "job.employer"

[checkpoint]
path = "{state / 'contributors.checkpoint'}"

[batch]
max_age = 0.2
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-wait", action="store_true", help="end after the scripted steps")
    args = parser.parse_args(argv)
    keep_following = sys.stdin.isatty() and not args.no_wait and not os.environ.get("CI")
    docs = json.loads((ROOT / "examples" / "sample_contributors.json").read_text())

    with tempfile.TemporaryDirectory(prefix="bridge-demo-") as tmp, PouchServer() as couch, \
            PandaEmulator(port=0) as emulator:
        state = Path(tmp)
        config = state / "bridge.toml"
        couch_url = couch.url.rstrip("/")
        config.write_text(config_text(couch_url, emulator.url, state))
        couch.create_db(DATABASE)
        couch.bulk_docs(DATABASE, docs)
        print(f"CouchDB (PouchDB Server): {couch_url}/{DATABASE} with {len(docs)} documents (one design doc)")
        print(f"PANDA emulator:          {emulator.url}/api/1.0/dataset/{DATASET}/  (user {EMAIL})")
        print(f"bridge config:           {config}\n")
        bridge = start_bridge(config)
        try:
            expected = len(docs) - 1  # the design document is not data
            wait_for("the backfill arrived", lambda: len(rows(emulator, DATASET)) == expected)
            show(emulator, DATASET, "backfill done", COLUMNS)

            print("\n>>> updating contributor-002 (new employer) and adding contributor-011 in CouchDB")
            grace = couch.get_doc(DATABASE, "contributor-002")
            assert grace is not None
            grace["job"] = {"employer": "Yale"}
            couch.put_doc(DATABASE, grace)
            couch.put_doc(DATABASE, {"_id": "contributor-011", "first_name": "Radia", "last_name": "Perlman",
                                     "job": {"employer": "Dell"}, "amount": 64})
            wait_for("the update and the new row arrived",
                     lambda: rows(emulator, DATASET).get("contributor-002", [None] * 3)[2] == "Yale"
                     and "contributor-011" in rows(emulator, DATASET))
            show(emulator, DATASET, "after the update and the insert", COLUMNS)

            print("\n>>> deleting 'org.example/contributor:9' in CouchDB")
            couch.delete_doc(DATABASE, "org.example/contributor:9")
            wait_for("the delete arrived",
                     lambda: "_org_2e_example_2f_contributor_3a_9" not in rows(emulator, DATASET))
            show(emulator, DATASET, "after the delete", COLUMNS)

            if keep_following:
                print(f"\nThe bridge keeps following. Write to {couch_url}/{DATABASE} (e.g. with curl) and watch "
                      f"{emulator.url}/api/1.0/dataset/{DATASET}/data/?limit=100 ; Ctrl-C to stop.")
                try:
                    while bridge.poll() is None:
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    pass
        finally:
            code = stop_bridge(bridge)
        print(f"\nbridge stopped with exit code {code}; its checkpoint was {state / 'contributors.checkpoint'}")
        return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
