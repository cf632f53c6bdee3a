"""mapping.py: documents become rows of text cells in column order, and external_ids."""

import pytest

from bridge.config.settings import MappingSettings
from bridge.core.mapping import MISSING, RowMapper, lookup, to_cell
from bridge.errors import ConfigError, MappingError
from bridge.model import Change


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (MISSING, None),
        (None, None),
        ("text", "text"),
        ("", ""),
        ("Zürich", "Zürich"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (42, "42"),
        (-7, "-7"),
        (10**20, "100000000000000000000"),
        (3.5, "3.5"),
        (1e20, "1e+20"),
        (0.1, "0.1"),
        ([1, "a", None], '[1,"a",null]'),
        ({"b": 1, "a": [True]}, '{"b":1,"a":[true]}'),
        ({"ü": "é"}, '{"ü":"é"}'),
    ],
)
def test_cells(value, cell):
    assert to_cell(value) == cell


@pytest.mark.parametrize(
    ("doc", "path", "value"),
    [
        ({"a": 1}, "a", 1),
        ({"a": {"b": {"c": 2}}}, "a.b.c", 2),
        ({"a.b": 1, "a": {"b": 2}}, "a.b", 1),  # an exact top-level key wins
        ({"a": {"b": 2}}, "a.c", MISSING),
        ({"a": 5}, "a.b", MISSING),
        ({"a": [1, 2]}, "a.0", MISSING),
        ({}, "a", MISSING),
        ({"a": None}, "a", None),
    ],
)
def test_lookup(doc, path, value):
    assert lookup(doc, path) is value or lookup(doc, path) == value


def test_row_in_column_order_with_field_paths():
    mapper = RowMapper(MappingSettings(columns=["first_name", "last_name", "employer"],
                                       fields={"employer": "job.employer"}))
    doc = {"_id": "x", "last_name": "Doe", "first_name": "Jane", "job": {"employer": "Acme"}}
    assert mapper.row(doc) == ("Jane", "Doe", "Acme")
    assert mapper.row({"_id": "y"}) == (None, None, None)


@pytest.mark.parametrize(
    ("settings", "doc_id", "doc", "external_id"),
    [
        (MappingSettings(columns=["a"]), "user-42", {"_id": "user-42"}, "user-42"),
        (MappingSettings(columns=["a"]), "user:42", {"_id": "user:42"}, "_user_3a_42"),
        (MappingSettings(columns=["a"]), "gone", None, "gone"),  # tombstones still have an id
        (MappingSettings(columns=["a"], external_id="code"), "d1", {"code": "A-1"}, "A-1"),
        (MappingSettings(columns=["a"], external_id="meta.n"), "d1", {"meta": {"n": 7}}, "7"),
        (MappingSettings(columns=["a"], external_id_template="{type}-{number}"), "d1",
         {"type": "inv", "number": 12}, "inv-12"),
        (MappingSettings(columns=["a"], external_id_template="{type}:{number}"), "d1",
         {"type": "inv", "number": 12}, "_inv_3a_12"),
    ],
)
def test_external_ids(settings, doc_id, doc, external_id):
    change = Change(seq=None, doc_id=doc_id, deleted=doc is None, doc=doc)
    assert RowMapper(settings).external_id(change) == external_id


@pytest.mark.parametrize(
    ("settings", "doc"),
    [
        (MappingSettings(columns=["a"], external_id="code"), {"other": 1}),
        (MappingSettings(columns=["a"], external_id="code"), {"code": None}),
        (MappingSettings(columns=["a"], external_id="code"), {"code": {"x": 1}}),
        (MappingSettings(columns=["a"], external_id="code"), {"code": [1]}),
        (MappingSettings(columns=["a"], external_id="code"), {"code": ""}),
        (MappingSettings(columns=["a"], external_id_template="{code}"), {"code": ""}),
        (MappingSettings(columns=["a"], external_id="code"), None),
        (MappingSettings(columns=["a"], external_id_template="{type}-{n}"), {"type": "x"}),
    ],
)
def test_unformable_external_id_is_a_mapping_error(settings, doc):
    change = Change(seq=None, doc_id="d1", deleted=False, doc=doc)
    with pytest.raises(MappingError, match="d1"):
        RowMapper(settings).external_id(change)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"columns": []},
        {"columns": ["a", "a"]},
        {"columns": ["a,b"]},
        {"columns": [" a"]},
        {"columns": [""]},
        {"columns": ["a"], "fields": {"b": "x"}},
        {"columns": ["a"], "external_id": ""},
    ],
)
def test_bad_mapping_settings(kwargs):
    with pytest.raises(ConfigError):
        MappingSettings(**kwargs)
