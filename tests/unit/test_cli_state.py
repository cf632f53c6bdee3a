"""`bridge checkpoint show` and `bridge deadletter list` read only the local state: no secret needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.core.planning import Refusal
from bridge.model import Seq
from bridge.state.deadletter import DeadLetterFile

CONFIG = """
[source]
database = "people"
[panda]
email = "panda@pandaproject.net"
dataset = "people"
[mapping]
columns = ["name"]
[checkpoint]
path = "{path}"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PANDA_API_KEY", raising=False)
    monkeypatch.delenv("COUCHDB_PASSWORD", raising=False)
    path = tmp_path / "bridge.toml"
    path.write_text(CONFIG.format(path=(tmp_path / "state" / "bridge.checkpoint").as_posix()))
    return path


def test_checkpoint_show_without_the_api_key(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checkpoint", "show", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] is None


def test_deadletter_list_without_the_api_key(config: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    DeadLetterFile(tmp_path / "state" / "bridge.checkpoint.deadletter.jsonl").append(
        [Refusal("doc-1", Seq(3), "refused")])
    assert main(["deadletter", "list", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["doc_id"] == "doc-1"


def test_commands_that_reach_panda_still_need_the_key(config: Path) -> None:
    assert main(["deadletter", "retry", "--config", str(config)]) == 2
    assert main(["once", "--config", str(config)]) == 2
