"""key_clashes: which other slugs share PANDA's `<slug>-<external_id>` Solr keys with this dataset."""

from __future__ import annotations

import pytest

from bridge.config.settings import MappingSettings
from bridge.core.keyspace import key_clashes
from bridge.core.mapping import RowMapper
from bridge.errors import ConfigError
from bridge.model import Change, Seq


@pytest.mark.parametrize(
    ("slug", "other", "prefix", "clash"),
    [
        ("contributors", "contributors-2024", "", True),  # our row 2024-x is their row x
        ("contributors", "contributors-2024", "r_", False),
        ("contributors", "contributors-2024", "2024_", False),
        ("contributors", "contributors-2024", "20-", False),
        ("contributors", "contributors-2024", "2024-", True),  # every id starts 2024-
        ("contributors", "contributors-2024", "2024-x_", True),
        ("contributors", "contributors-2", "2_", False),
        ("a", "a-b-c", "", True),
        ("a", "a-b-c", "b-", True),  # b-c-... is still possible
        ("a", "a-b-c", "b_", False),
        ("contributors-2024", "contributors", "", True),  # their row 2024-x is our row x: unavoidable
        ("contributors-2024", "contributors", "r_", True),
        ("contributors", "contributors", "", False),  # itself
        ("contributors", "contributors_2024", "", False),
        ("contributors", "contributorsx", "", False),
        ("contributors", "other-contributors", "", False),
        ("a", "a-", "", False),  # our ids never start with '-'
    ],
)
def test_key_clashes(slug: str, other: str, prefix: str, clash: bool) -> None:
    found = key_clashes(slug, [other, "unrelated"], prefix)
    assert len(found) == int(clash)
    if clash:
        assert repr(other) in found[0]


def test_every_clashing_slug_is_named_once() -> None:
    found = key_clashes("a-b", ["a", "a-b-c", "a-b-c", "a-b", "b"])
    assert [line.split(":")[0] for line in found] == ["dataset 'a'", "dataset 'a-b-c'"]


@pytest.mark.parametrize("prefix", ["-r_", "r", "A", "r:_", "é_", " r_"])
def test_a_prefix_that_could_break_an_id_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="external_id_prefix"):
        MappingSettings(columns=["a"], external_id_prefix=prefix)


def test_the_prefix_goes_before_the_encoded_id() -> None:
    mapper = RowMapper(MappingSettings(columns=["a"], external_id_prefix="r_"))
    assert mapper.external_id(Change(Seq(1), "user:42", False, {"a": 1})) == "r__user_3a_42"
    assert mapper.external_id(Change(Seq(1), "AND", True, None)) == "r__AND"
    by_code = RowMapper(MappingSettings(columns=["a"], external_id="code", external_id_prefix="x-"))
    assert by_code.external_id(Change(Seq(1), "d", False, {"code": "NOT"})) == "x-_NOT"
