"""Issue 16, defect 5: no error message or log line, even at DEBUG, contains a configured secret."""

from __future__ import annotations

import subprocess

from tests.support.couchdb_server import CouchDatabase
from tests.support.pipeline import Pipeline, make_docs

KEY = "98765432"


def run(pipeline: Pipeline, *args: str, key: str = KEY) -> subprocess.CompletedProcess[str]:
    pipeline.write_config() if not pipeline.config.exists() else None
    return subprocess.run(pipeline.command("once", "--log-level", "DEBUG", *args),
                          env=dict(pipeline.env(), PANDA_API_KEY=key), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_the_api_key_is_in_no_log_line(pipeline: Pipeline, couch_db: CouchDatabase) -> None:
    couch_db.server.bulk_docs(couch_db.name, make_docs(3))
    result = run(pipeline)
    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr and KEY not in result.stderr + result.stdout


def test_a_mistyped_api_key_is_not_echoed(pipeline: Pipeline) -> None:
    result = run(pipeline, "--set", f"panda.api_key={KEY}")  # TOML reads it as an integer
    assert result.returncode == 2, result.stderr
    assert "api_key must be str, got a value of type int" in result.stderr and KEY not in result.stderr
