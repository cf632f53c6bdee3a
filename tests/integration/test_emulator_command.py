"""`bridge-panda-emulator` as users run it: a process of its own, driven over HTTP, stopped by a signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import requests

from bridge.emulator import DEFAULT_API_KEY, DEFAULT_EMAIL
from tests.support.couchdb_server import free_port
from tests.support.pipeline import Pipeline


class RemoteEmulator:
    """Just enough of PandaEmulator's API, over the /_emulator/ control endpoints, for Pipeline."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, slug: str) -> dict[str, list]:
        response = requests.get(f"{self.url}/_emulator/datasets/{slug}/rows", timeout=5)
        if response.status_code == 404:
            raise KeyError(slug)
        return response.json()


def test_the_command_serves_the_api_and_the_bridge_mirrors_into_it(couch_db, tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.emulator", "--port", str(port), "--dataset", "people:name,city"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{url}/_emulator/datasets/people", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                assert time.monotonic() < deadline and process.poll() is None, process.stderr
                time.sleep(0.05)
        headers = {"PANDA-EMAIL": DEFAULT_EMAIL, "PANDA-API-KEY": DEFAULT_API_KEY}
        assert requests.get(f"{url}/api/1.0/dataset/people/", timeout=5).status_code == 401
        assert requests.get(f"{url}/api/1.0/dataset/people", headers=headers, timeout=5,
                            allow_redirects=False).status_code == 301

        couch_db.server.bulk_docs(couch_db.name, [{"_id": "p:1", "name": "Ada", "city": "London"},
                                                  {"_id": "p:2", "name": "Grace"}])
        pipeline = Pipeline(source_url=couch_db.server.url, database=couch_db.name,
                            panda=RemoteEmulator(url),  # type: ignore[arg-type]
                            dir=tmp_path / "bridge", dataset="people", columns=["name", "city"], fields={})
        result = pipeline.once()
        assert result.returncode == 0, result.stderr
        assert pipeline.rows() == {"_p_3a_1": ["Ada", "London"], "_p_3a_2": ["Grace", None]}
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
