"""The emulator's reject_rows switch: matching bulk objects fail PANDA's own validation, the rest pass."""

from __future__ import annotations

import pytest

from bridge.emulator import PandaEmulator
from bridge.emulator.control import dispatch
from bridge.emulator.faults import Faults
from bridge.emulator.rules import check_bulk_objects, plain_columns

COLUMNS = plain_columns(["a", "b"])


def objects(*ids: str) -> list[dict[str, object]]:
    return [{"external_id": external_id, "data": ["1", "2"]} for external_id in ids]


def test_matching_rows_fail_with_pandas_real_answers():
    faults = Faults()
    faults.reject_rows(r"^bad")
    faults.reject_rows(r"short$", "data")
    body = faults.rewrite_bulk({"objects": objects("ok", "bad-1", "is-short")})
    rewritten = body["objects"]
    assert rewritten[0] == {"external_id": "ok", "data": ["1", "2"]}
    refusal = check_bulk_objects([rewritten[1]], COLUMNS)
    assert refusal is not None and refusal.status == 400
    assert refusal.json == {"data": {"external_id": ["external_id can only contain letters, numbers, "
                                                     "underscores and dashes."]}}
    refusal = check_bulk_objects([rewritten[2]], COLUMNS)
    assert refusal is not None and refusal.json == {"data": ["Got 1 data fields. Expected 2."]}
    assert check_bulk_objects([rewritten[0]], COLUMNS) is None


def test_rules_clear_and_validate():
    faults = Faults()
    body = {"objects": objects("bad")}
    assert faults.rewrite_bulk(body) is body  # no rule: untouched
    faults.reject_rows("bad")
    assert faults.rewrite_bulk(body) != body
    faults.reject_rows(None)
    assert faults.rewrite_bulk(body) is body
    faults.reject_rows("bad")
    faults.reset()
    assert faults.rewrite_bulk(body) is body
    with pytest.raises(ValueError):
        faults.reject_rows("(")
    with pytest.raises(ValueError):
        faults.reject_rows("x", "columns")
    assert faults.rewrite_bulk({"objects": "not a list"}) == {"objects": "not a list"}


def test_http_control():
    emu = PandaEmulator()  # never started: dispatch is called directly
    assert dispatch(emu, "POST", "/_emulator/reject_rows", b'{"pattern": "^x", "problem": "data"}') == (
        200, {"ok": True})
    assert emu.faults.rewrite_bulk({"objects": objects("x1")})["objects"][0]["data"] == ["1"]
    assert dispatch(emu, "POST", "/_emulator/reject_rows", b'{"pattern": "("}')[0] == 400
    assert dispatch(emu, "POST", "/_emulator/reject_rows", b"{}")[0] == 400
    assert dispatch(emu, "DELETE", "/_emulator/reject_rows", b"") == (200, {"ok": True})
    assert emu.faults.rewrite_bulk({"objects": objects("x1")})["objects"][0]["data"] == ["1", "2"]
