"""Mango selectors evaluated locally, and DocFilter: table-driven against CouchDB's documented behaviour."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.core.filtering import DocFilter, compile_selector
from bridge.errors import ConfigError

DOC: dict[str, Any] = {
    "_id": "user:42",
    "name": "Ada",
    "age": 36,
    "score": 7.5,
    "active": True,
    "nothing": None,
    "tags": ["math", "code", "poetry"],
    "grades": [80, 92, 67],
    "matrix": [[1, 2], [3, 4]],
    "address": {"city": "London", "zip": "N1", "geo": {"lat": 51.5}},
    "jobs": [{"employer": "Babbage", "years": 9}, {"employer": "Lovelace Ltd", "years": 2}],
    "cameras": {"front": 1, "secondary": 2},
    "a.b": "dotted key",
    "$odd": "dollar key",
    "empty": {},
    "none": [],
}


CASES: list[tuple[str, dict[str, Any], bool]] = [
    # implicit equality, implicit $and, nested objects, dotted paths
    ("equality", {"name": "Ada"}, True),
    ("equality fails", {"name": "Bob"}, False),
    ("implicit and", {"name": "Ada", "age": 36}, True),
    ("implicit and, one fails", {"name": "Ada", "age": 37}, False),
    ("int equals float", {"age": 36.0}, True),
    ("true is not 1", {"active": 1}, False),
    ("null equality", {"nothing": None}, True),
    ("array equality", {"tags": ["math", "code", "poetry"]}, True),
    ("array equality is ordered", {"tags": ["code", "math", "poetry"]}, False),
    ("empty object means equality", {"empty": {}}, True),
    ("nested sub-selector", {"address": {"city": "London"}}, True),
    ("nested sub-selector with operator", {"address": {"geo": {"lat": {"$gt": 50}}}}, True),
    ("dotted path", {"address.city": "London"}, True),
    ("deep dotted path", {"address.geo.lat": 51.5}, True),
    ("dotted path through a scalar", {"name.first": {"$exists": False}}, False),
    ("array index in a path", {"tags.1": "code"}, True),
    ("array index out of range", {"tags.9": {"$exists": False}}, False),
    ("array index inside objects", {"jobs.0.employer": "Babbage"}, True),
    ("escaped dot", {"a\\.b": "dotted key"}, True),
    ("escaped dollar", {"\\$odd": "dollar key"}, True),
    ("_id", {"_id": {"$beginsWith": "user:"}}, True),
    ("empty selector matches all", {}, True),
    # comparison operators and CouchDB's type order
    ("$eq", {"age": {"$eq": 36}}, True),
    ("$ne", {"age": {"$ne": 36}}, False),
    ("$ne other", {"age": {"$ne": 35}}, True),
    ("$lt", {"age": {"$lt": 40}}, True),
    ("$lte equal", {"age": {"$lte": 36}}, True),
    ("$gt", {"age": {"$gt": 36}}, False),
    ("$gte", {"age": {"$gte": 36}}, True),
    ("range", {"age": {"$gt": 30, "$lt": 40}}, True),
    ("number < string", {"age": {"$lt": ""}}, True),
    ("string > number", {"name": {"$gt": 1e300}}, True),
    ("true > false > null", {"active": {"$gt": False}}, True),
    ("null is the smallest", {"nothing": {"$lt": False}}, True),
    ("booleans < numbers", {"active": {"$lt": -1e300}}, True),
    ("array > string", {"tags": {"$gt": "zzz"}}, True),
    ("object > array", {"address": {"$gt": [99]}}, True),
    ("arrays compare element-wise", {"tags": {"$gt": ["math", "book"]}}, True),
    ("shorter array first", {"tags": {"$gt": ["math", "code"]}}, True),
    ("objects compare by key, then value", {"address": {"$lt": {"city": "Paris"}}}, True),
    ("strings by code point", {"name": {"$lt": "a"}}, True),
    # $exists, $type
    ("$exists true", {"age": {"$exists": True}}, True),
    ("$exists true on null", {"nothing": {"$exists": True}}, True),
    ("$exists false on present", {"age": {"$exists": False}}, False),
    ("$exists false on missing", {"missing": {"$exists": False}}, True),
    ("$exists true on missing", {"missing": {"$exists": True}}, False),
    ("$type null", {"nothing": {"$type": "null"}}, True),
    ("$type boolean", {"active": {"$type": "boolean"}}, True),
    ("$type number int", {"age": {"$type": "number"}}, True),
    ("$type number float", {"score": {"$type": "number"}}, True),
    ("$type boolean is not number", {"active": {"$type": "number"}}, False),
    ("$type string", {"name": {"$type": "string"}}, True),
    ("$type array", {"tags": {"$type": "array"}}, True),
    ("$type object", {"address": {"$type": "object"}}, True),
    # $in, $nin, $size, $all
    ("$in scalar", {"age": {"$in": [1, 36]}}, True),
    ("$in scalar fails", {"age": {"$in": [1, 2]}}, False),
    ("$in on array: any element", {"tags": {"$in": ["code", "x"]}}, True),
    ("$in on array: none", {"tags": {"$in": ["x"]}}, False),
    ("$in empty", {"age": {"$in": []}}, False),
    ("$nin scalar", {"age": {"$nin": [1, 2]}}, True),
    ("$nin scalar fails", {"age": {"$nin": [36]}}, False),
    ("$nin on array", {"tags": {"$nin": ["code"]}}, False),
    ("$nin empty", {"age": {"$nin": []}}, True),
    ("$size", {"tags": {"$size": 3}}, True),
    ("$size wrong", {"tags": {"$size": 2}}, False),
    ("$size zero", {"none": {"$size": 0}}, True),
    ("$size on a string", {"name": {"$size": 3}}, False),
    ("$all", {"tags": {"$all": ["poetry", "math"]}}, True),
    ("$all missing one", {"tags": {"$all": ["poetry", "x"]}}, False),
    ("$all empty", {"tags": {"$all": []}}, False),
    ("$all on a scalar", {"name": {"$all": ["Ada"]}}, False),
    ("$all with the whole array", {"tags": {"$all": [["math", "code", "poetry"]]}}, True),
    ("$all of arrays", {"matrix": {"$all": [[3, 4]]}}, True),
    # $mod, $regex, $beginsWith
    ("$mod", {"age": {"$mod": [5, 1]}}, True),
    ("$mod wrong", {"age": {"$mod": [5, 2]}}, False),
    ("$mod on a float", {"score": {"$mod": [2, 1]}}, False),
    ("$mod on a boolean", {"active": {"$mod": [2, 1]}}, False),
    ("$regex", {"name": {"$regex": "^A"}}, True),
    ("$regex searches", {"name": {"$regex": "d"}}, True),
    ("$regex is case-sensitive", {"name": {"$regex": "^a"}}, False),
    ("$regex inline flag", {"name": {"$regex": "(?i)^a"}}, True),
    ("$regex on a number", {"age": {"$regex": "3"}}, False),
    ("$beginsWith", {"address.city": {"$beginsWith": "Lon"}}, True),
    ("$beginsWith is case-sensitive", {"address.city": {"$beginsWith": "lon"}}, False),
    ("$beginsWith on a number", {"age": {"$beginsWith": "3"}}, False),
    # $elemMatch, $allMatch, $keyMapMatch
    ("$elemMatch scalar", {"grades": {"$elemMatch": {"$gte": 90, "$lt": 95}}}, True),
    ("$elemMatch none", {"grades": {"$elemMatch": {"$gt": 95}}}, False),
    ("$elemMatch objects", {"jobs": {"$elemMatch": {"employer": "Babbage", "years": {"$gt": 5}}}}, True),
    ("$elemMatch same element", {"jobs": {"$elemMatch": {"employer": "Babbage", "years": 2}}}, False),
    ("$elemMatch on an object", {"address": {"$elemMatch": {"$eq": "London"}}}, False),
    ("$elemMatch empty array", {"none": {"$elemMatch": {"$exists": True}}}, False),
    ("$elemMatch nested", {"matrix": {"$elemMatch": {"$elemMatch": {"$eq": 4}}}}, True),
    ("$allMatch", {"grades": {"$allMatch": {"$gt": 60}}}, True),
    ("$allMatch one fails", {"grades": {"$allMatch": {"$gt": 70}}}, False),
    ("$allMatch empty array", {"none": {"$allMatch": {"$gt": 0}}}, False),
    ("$keyMapMatch", {"cameras": {"$keyMapMatch": {"$eq": "secondary"}}}, True),
    ("$keyMapMatch none", {"cameras": {"$keyMapMatch": {"$eq": "rear"}}}, False),
    ("$keyMapMatch on an array", {"tags": {"$keyMapMatch": {"$eq": "math"}}}, False),
    # combination operators
    ("$and", {"$and": [{"name": "Ada"}, {"age": 36}]}, True),
    ("$and fails", {"$and": [{"name": "Ada"}, {"age": 1}]}, False),
    ("$or", {"$or": [{"name": "Bob"}, {"age": 36}]}, True),
    ("$or fails", {"$or": [{"name": "Bob"}, {"age": 1}]}, False),
    ("$nor", {"$nor": [{"name": "Bob"}, {"age": 1}]}, True),
    ("$nor fails", {"$nor": [{"name": "Bob"}, {"age": 36}]}, False),
    ("$not", {"$not": {"name": "Bob"}}, True),
    ("$not fails", {"$not": {"name": "Ada"}}, False),
    ("$not on a field", {"age": {"$not": {"$gt": 40}}}, True),
    ("$not twice", {"$not": {"$not": {"name": "Ada"}}}, True),
    ("$or inside a field", {"age": {"$or": [1, 36]}}, True),
    ("$and inside a field", {"age": {"$and": [{"$gt": 1}, {"$lt": 10}]}}, False),
    ("$not with the year example", {"age": {"$gte": 30}, "$not": {"age": 35}}, True),
    ("empty $and matches", {"$and": []}, True),
    ("empty $or matches (as CouchDB)", {"$or": []}, True),
    ("empty $nor matches", {"$nor": []}, True),
]

MISSING_FIELD_CASES: list[tuple[str, dict[str, Any], bool]] = [
    # CouchDB: "For a condition operator to function correctly, the field must exist in the document".
    ("$eq", {"f": 1}, False),
    ("$ne", {"f": {"$ne": 1}}, False),
    ("$nin", {"f": {"$nin": [1]}}, False),
    ("$lt", {"f": {"$lt": 1}}, False),
    ("$gt null", {"f": {"$gt": None}}, False),
    ("$type", {"f": {"$type": "null"}}, False),
    ("$size", {"f": {"$size": 0}}, False),
    ("$not of $eq", {"$not": {"f": 1}}, False),
    ("$not on the field", {"f": {"$not": {"$eq": 1}}}, False),
    ("$not of $regex", {"f": {"$not": {"$regex": "x"}}}, False),
    ("$nor", {"$nor": [{"f": 1}]}, False),
    ("$exists false", {"f": {"$exists": False}}, True),
    ("$exists true", {"f": {"$exists": True}}, False),
    ("$not of $exists true", {"$not": {"f": {"$exists": True}}}, True),
    ("$not of $exists false", {"$not": {"f": {"$exists": False}}}, False),
    ("$exists false and $ne", {"f": {"$exists": False, "$ne": 1}}, False),
    ("$or with $exists false", {"$or": [{"f": {"$exists": False}}, {"f": 1}]}, True),
    ("missing parent", {"f.g": {"$exists": False}}, True),
    ("De Morgan: one field present", {"$not": {"f": 1, "name": "Bob"}}, True),
    ("De Morgan: no field present", {"$not": {"f": 1, "g": 2}}, False),
]


@pytest.mark.parametrize(("name", "selector", "expected"), CASES, ids=[case[0] for case in CASES])
def test_selector_matches_like_couchdb(name: str, selector: dict[str, Any], expected: bool) -> None:
    assert compile_selector(selector).matches(DOC) is expected


@pytest.mark.parametrize(
    ("name", "selector", "expected"), MISSING_FIELD_CASES, ids=[case[0] for case in MISSING_FIELD_CASES]
)
def test_missing_field_fails_every_condition_but_exists_false(
    name: str, selector: dict[str, Any], expected: bool
) -> None:
    assert compile_selector(selector).matches({"name": "Ada"}) is expected


@pytest.mark.parametrize(
    ("value", "selector", "expected"),
    [
        (-5, {"$mod": [3, -2]}, True),  # Erlang rem: the remainder takes the dividend's sign
        (-5, {"$mod": [3, 1]}, False),
        (5, {"$mod": [-3, 2]}, True),
        (6, {"$mod": [3, 0]}, True),
        ({"k": 1}, {"$gt": {"j": 9}}, True),  # first keys differ: "k" > "j"
        ({"k": 1}, {"$lt": {"k": 1, "a": 0}}, True),  # fewer pairs first
        ([1, "a"], {"$gt": [1, 2]}, True),
        ("é", {"$gt": "z"}, True),  # code point order, unlike ICU
        ("", {"$lt": []}, True),
    ],
)
def test_condition_on_a_value(value: Any, selector: dict[str, Any], expected: bool) -> None:
    assert compile_selector({"v": selector}).matches({"v": value}) is expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ({"a": {"$foo": 1}}, "unknown operator '$foo' on field 'a'"),
        ({"$foo": 1}, "unknown operator '$foo'"),
        ({"a": {"$where": "x"}}, "$where is not supported"),
        ({"a": {"$text": "x"}}, "$text is not supported"),
        ({"$and": {"a": 1}}, "$and on the top level needs an array of selectors"),
        ({"$or": "a"}, "$or on the top level needs an array"),
        ({"$nor": None}, "$nor on the top level needs an array"),
        ({"$not": [1]}, "$not on the top level needs a selector object"),
        ({"a": {"$not": 1}}, "$not on field 'a' needs a selector object"),
        ({"a": {"$in": 1}}, "$in on field 'a' needs an array"),
        ({"a": {"$nin": "x"}}, "$nin on field 'a' needs an array"),
        ({"a": {"$all": {}}}, "$all on field 'a' needs an array"),
        ({"a": {"$exists": "yes"}}, "$exists on field 'a' needs true or false"),
        ({"a": {"$exists": 1}}, "$exists on field 'a' needs true or false"),
        ({"a": {"$type": "int"}}, "$type on field 'a' needs one of null, boolean"),
        ({"a": {"$type": 1}}, "$type on field 'a' needs one of"),
        ({"a": {"$size": -1}}, "$size on field 'a' needs a non-negative integer"),
        ({"a": {"$size": 1.5}}, "$size on field 'a' needs a non-negative integer"),
        ({"a": {"$size": True}}, "$size on field 'a' needs a non-negative integer"),
        ({"a": {"$mod": [0, 1]}}, "$mod on field 'a' needs [divisor, remainder]"),
        ({"a": {"$mod": [2]}}, "$mod on field 'a' needs [divisor, remainder]"),
        ({"a": {"$mod": [2.0, 1]}}, "$mod on field 'a' needs [divisor, remainder]"),
        ({"a": {"$mod": 2}}, "$mod on field 'a' needs [divisor, remainder]"),
        ({"a": {"$regex": "("}}, "$regex on field 'a': bad pattern '('"),
        ({"a": {"$regex": "\\Qx\\E"}}, "$regex on field 'a': bad pattern"),
        ({"a": {"$regex": 1}}, "$regex on field 'a' needs a string"),
        ({"a": {"$beginsWith": 1}}, "$beginsWith on field 'a' needs a string"),
        ({"a": {"$elemMatch": [1]}}, "$elemMatch on field 'a' needs a selector object"),
        ({"a": {"$allMatch": 1}}, "$allMatch on field 'a' needs a selector object"),
        ({"a": {"$keyMapMatch": "k"}}, "$keyMapMatch on field 'a' needs a selector object"),
        ({"a": {"$eq": {1, 2}}}, "$eq on field 'a' needs a JSON value"),
        ({"a": {"$gt": float("nan")}}, "$gt on field 'a' needs a JSON value"),
        ({"a": {"b": {"$foo": 1}}}, "unknown operator '$foo' on field 'a.b'"),
        ({"a": {"$elemMatch": {"$foo": 1}}}, "unknown operator '$foo' on the element"),
        ({"$gt": 1}, "$gt on the top level needs a field name"),
        ({"$or": [1, 2]}, "$eq on the top level needs a field name"),
        ({"$and": [{}]}, "$eq on the top level needs a field name"),
        ({"": 1}, "field name '' is empty"),
        ({"a..b": 1}, "field name 'a..b' is empty or has an empty part"),
        ({"a.": 1}, "field name 'a.' is empty or has an empty part"),
        ({"$or": [{"a": 1}, {"b": {"$size": "x"}}]}, "$size on field 'b'"),
        ([("a", 1)], "must be a JSON object"),
    ],
)
def test_invalid_selector_is_a_config_error(selector: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compile_selector(selector)
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


ADA = {"_id": "ada", "name": "Ada"}


@pytest.mark.parametrize(
    ("doc_filter", "doc_id", "doc", "expected"),
    [
        (DocFilter(), "ada", ADA, True),
        (DocFilter(), "_design/views", {"_id": "_design/views", "views": {}}, False),
        (DocFilter(), "ada", None, False),
        (DocFilter(), "ada", {"_id": "ada", "_rev": "2-x", "_deleted": True}, False),
        (DocFilter(doc_ids=frozenset({"ada"})), "ada", ADA, True),
        (DocFilter(doc_ids=frozenset({"bob"})), "ada", ADA, False),
        (DocFilter(doc_ids=frozenset({"_design/views"})), "_design/views", {"_id": "_design/views"}, False),
        (DocFilter(selector=compile_selector({"name": "Ada"})), "ada", ADA, True),
        (DocFilter(selector=compile_selector({"name": "Bob"})), "ada", ADA, False),
        (DocFilter(selector=compile_selector({"name": {"$exists": False}})), "ada", None, False),
        (DocFilter(compile_selector({"name": "Ada"}), frozenset({"bob"})), "ada", ADA, False),
        (DocFilter(compile_selector({"_id": {"$gt": "a"}}), frozenset({"ada"})), "ada", ADA, True),
    ],
)
def test_doc_filter_accepts(
    doc_filter: DocFilter, doc_id: str, doc: dict[str, Any] | None, expected: bool
) -> None:
    assert doc_filter.accepts(doc_id, doc) is expected


@pytest.mark.parametrize(
    ("doc_ids", "message"),
    [
        (frozenset(), "an empty set would accept no document"),
        (["ada"], "must be a frozenset"),
        (frozenset({1}), "must be a frozenset of document id strings"),
    ],
)
def test_doc_filter_rejects_bad_doc_ids(doc_ids: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DocFilter(doc_ids=doc_ids)


def test_compiled_selector_is_reusable_and_does_not_mutate_its_input() -> None:
    source = {"age": {"$gt": 30}, "$not": {"name": "Bob"}}
    selector = compile_selector(source)
    assert source == {"age": {"$gt": 30}, "$not": {"name": "Bob"}}
    assert [selector.matches({"age": age, "name": "Ada"}) for age in (20, 40)] == [False, True]
