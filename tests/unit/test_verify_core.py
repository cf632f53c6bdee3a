"""Issue 15, the pure and local parts: judging one id, the scratch diff, durations, the metric numbers."""

from __future__ import annotations

import pytest

from bridge.config.settings import VerifySettings, parse_duration
from bridge.core.planning import row_hash
from bridge.errors import ConfigError
from bridge.verify.compare import EXTRA_OWNED, EXTRA_UNOWNED, MISSING, STALE, judge, panda_row_hash
from bridge.verify.report import LatestVerify, Report
from bridge.verify.scratch import Scratch


@pytest.mark.parametrize(("expected", "found", "owned", "kind"), [
    (None, None, False, None),
    (None, None, True, None),
    (1, 1, False, None),
    (1, 1, True, None),
    (1, None, False, MISSING),
    (1, None, True, MISSING),
    (1, 2, True, STALE),
    (1, 2, False, STALE),
    (None, 2, True, EXTRA_OWNED),
    (None, 2, False, EXTRA_UNOWNED),
])
def test_judge(expected: int | None, found: int | None, owned: bool, kind: str | None) -> None:
    assert judge(expected, found, owned) == kind


def test_panda_row_hash_matches_the_mapped_row_and_nothing_else() -> None:
    assert panda_row_hash(["a", None, "3"]) == row_hash(("a", None, "3"))
    assert panda_row_hash(["a", None, 3]) != row_hash(("a", None, "3"))  # a hand-typed number is stale
    assert panda_row_hash("abc") != row_hash(("abc",))
    assert panda_row_hash({"a": 1}) != panda_row_hash("abc")


def test_scratch_finds_every_kind_with_joins() -> None:
    scratch = Scratch()
    try:
        scratch.set_source([("same", "d1", 1), ("changed", "d2", 2), ("gone", "d3", 3), ("moved", "d4", 4)],
                           [], ["d9"])
        scratch.set_source([("moved-2", "d4", 4)], ["d3"], [])  # read again: d4's id changed, d3 was deleted
        scratch.add_panda([("same", 1), ("changed", 20), ("moved", 4), ("gone", 3), ("stranger", 7),
                           ("kept-while-unmappable", 8)])
        scratch.add_panda([("same", 1)])  # listed twice while the listing moved: counted once
        scratch.add_owned([("same", "d1"), ("moved", "d4"), ("gone", "d3"), ("kept-while-unmappable", "d9")])
        scratch.find_differences()
        assert scratch.counts() == {MISSING: 1, STALE: 1, EXTRA_OWNED: 2, EXTRA_UNOWNED: 1}
        kinds = {eid: kind for chunk in scratch.candidates(chunk=2) for eid, kind, _doc, _hash in chunk}
        assert kinds == {"moved-2": MISSING, "changed": STALE, "moved": EXTRA_OWNED, "gone": EXTRA_OWNED,
                         "stranger": EXTRA_UNOWNED}
        assert scratch.total("panda") == 6
        assert scratch.expected(["moved-2", "moved"]) == {"moved-2": ("d4", 4)}

        scratch.settle(["changed"], [("stranger", None, 7, True, EXTRA_UNOWNED)])
        assert scratch.counts() == {MISSING: 1, STALE: 0, EXTRA_OWNED: 2, EXTRA_UNOWNED: 0}
        assert scratch.counts(moving=True)[EXTRA_UNOWNED] == 1
        settled = [eid for chunk in scratch.candidates(settled=True) for eid, *_ in chunk]
        assert settled == ["gone", "moved", "moved-2"]
    finally:
        scratch.close()


@pytest.mark.parametrize(("text", "seconds"), [
    ("", 0.0), ("0", 0.0), ("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("6h", 21600.0), ("1d", 86400.0),
    ("1.5h", 5400.0), (" 6h ", 21600.0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["6 hours", "h", "-1h", "6w", "1h30m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="every"):
        parse_duration(text)


def test_verify_settings_are_off_by_default() -> None:
    assert VerifySettings().interval == 0.0 and VerifySettings().repair is False
    assert VerifySettings(every="6h").interval == 21600.0
    with pytest.raises(ConfigError):
        VerifySettings(settle=-1)


def test_latest_verify_holds_the_numbers_metrics_export() -> None:
    latest = LatestVerify()
    assert latest.timestamp() is None
    assert latest.differences() == {MISSING: 0, STALE: 0, EXTRA_OWNED: 0, EXTRA_UNOWNED: 0}
    report = Report(counts={MISSING: 2, STALE: 0, EXTRA_OWNED: 1, EXTRA_UNOWNED: 0}, examples={},
                    finished_at=1234.5)
    latest.verified(report)
    assert latest.differences()[MISSING] == 2 and latest.timestamp() == 1234.5
    assert report.in_sync is False
    assert report.as_json()["missing"] == {"count": 2, "examples": []}
