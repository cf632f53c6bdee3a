"""Mirror a CouchDB database into PANDA once and exit: PouchDB Server and the PANDA emulator on loopback.

Run it with `.venv/bin/python examples/couchdb_source.py` after `./dev test` (or `./dev demo`) installed
things. It uses examples/couchdb.toml with the local servers' addresses; `./dev demo` shows live following.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _local import ROOT, show, start_bridge

from bridge.emulator import PandaEmulator
from tests.support.couchdb_server import PouchServer

COLUMNS = ["first_name", "last_name", "employer"]


def main() -> int:
    import json

    docs = json.loads((ROOT / "examples" / "sample_contributors.json").read_text())
    with tempfile.TemporaryDirectory(prefix="bridge-couchdb-") as tmp, PouchServer() as couch, \
            PandaEmulator(port=0) as emulator:
        couch.create_db("contributors")
        couch.bulk_docs("contributors", docs)
        text = (Path(__file__).parent / "couchdb.toml").read_text()
        text = text.replace('url = "http://127.0.0.1:5984"', f'url = "{couch.url.rstrip("/")}"')
        text = text.replace('username = "bridge"', "")
        text = text.replace('url = "http://127.0.0.1:8000"', f'url = "{emulator.url}"')
        text = text.replace('path = "state/contributors.checkpoint"',
                            f'path = "{Path(tmp) / "contributors.checkpoint"}"')
        config = Path(tmp) / "couchdb.toml"
        config.write_text(text)
        code = start_bridge(config, "once").wait(timeout=120)
        show(emulator, "contributors", f"`bridge once` exited {code}", COLUMNS)
        return code


if __name__ == "__main__":
    sys.exit(main())
