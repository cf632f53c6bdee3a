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
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.emulator import PandaEmulator  # noqa: E402
from tests.support.couchdb_server import CouchServer  # noqa: E402

DATABASE = "contributors"
DATASET = "contributors"
EMAIL = "panda@pandaproject.net"
API_KEY = "panda-demo-key"
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


def rows(emulator: PandaEmulator) -> dict[str, list[Any]]:
    """The dataset's rows; none until the bridge has created the dataset."""
    try:
        return emulator.rows(DATASET)
    except KeyError:
        return {}


def show(emulator: PandaEmulator, title: str) -> None:
    rows_now = rows(emulator)
    print(f"\n--- {title}: PANDA dataset {DATASET!r} holds {len(rows_now)} rows")
    print(f"    {'external_id':<44} " + " | ".join(COLUMNS))
    for external_id, data in sorted(rows_now.items()):
        print(f"    {external_id:<44} " + " | ".join("null" if cell is None else str(cell) for cell in data))
    sys.stdout.flush()


def wait_for(what: str, check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"demo: timed out waiting until {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-wait", action="store_true", help="end after the scripted steps")
    args = parser.parse_args(argv)
    keep_following = sys.stdin.isatty() and not args.no_wait and not os.environ.get("CI")
    docs = json.loads((ROOT / "examples" / "sample_contributors.json").read_text())

    with tempfile.TemporaryDirectory(prefix="bridge-demo-") as tmp, CouchServer() as couch, \
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
        env = dict(os.environ, PANDA_API_KEY=API_KEY)
        bridge = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)], env=env)
        try:
            expected = len(docs) - 1  # the design document is not data
            wait_for("the backfill arrived", lambda: len(rows(emulator)) == expected)
            show(emulator, "backfill done")

            print("\n>>> updating contributor-002 (new employer) and adding contributor-011 in CouchDB")
            grace = couch.get_doc(DATABASE, "contributor-002")
            assert grace is not None
            grace["job"] = {"employer": "Yale"}
            couch.put_doc(DATABASE, grace)
            couch.put_doc(DATABASE, {"_id": "contributor-011", "first_name": "Radia", "last_name": "Perlman",
                                     "job": {"employer": "Dell"}, "amount": 64})
            wait_for("the update and the new row arrived",
                     lambda: rows(emulator).get("contributor-002", [None] * 3)[2] == "Yale"
                     and "contributor-011" in rows(emulator))
            show(emulator, "after the update and the insert")

            print("\n>>> deleting 'org.example/contributor:9' in CouchDB")
            couch.delete_doc(DATABASE, "org.example/contributor:9")
            wait_for("the delete arrived",
                     lambda: "_org_2e_example_2f_contributor_3a_9" not in rows(emulator))
            show(emulator, "after the delete")

            if keep_following:
                print(f"\nThe bridge keeps following. Write to {couch_url}/{DATABASE} (e.g. with curl) and watch "
                      f"{emulator.url}/api/1.0/dataset/{DATASET}/data/?limit=100 ; Ctrl-C to stop.")
                try:
                    while bridge.poll() is None:
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    pass
        finally:
            if bridge.poll() is None:
                bridge.send_signal(signal.SIGTERM)
            code = bridge.wait(timeout=30)
        print(f"\nbridge stopped with exit code {code}; its checkpoint was {state / 'contributors.checkpoint'}")
        return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
