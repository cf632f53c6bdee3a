"""external_id: the id encoding is total, injective, decodable and PANDA-safe; id templates render fields."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.external_id import (
    RESERVED,
    compile_template,
    decode,
    encode,
    field_value,
    is_unchanged,
    is_valid,
)
from bridge.errors import ConfigError, MappingError

PANDA_SAFE = re.compile(r"[A-Za-z0-9_-]+")

# Every code point Python allows in a str, lone surrogates included: a JSON "\ud800" escape decodes to one.
any_char = st.characters(exclude_categories=())
any_id = st.text(any_char) | st.text(any_char, min_size=200, max_size=400)
safe_id = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9-]{0,60}\Z").filter(lambda s: s not in RESERVED)


def assert_panda_safe(external_id: str) -> None:
    assert PANDA_SAFE.fullmatch(external_id), external_id
    assert external_id.isascii()
    assert not external_id.startswith("-")
    assert external_id not in RESERVED
    assert is_valid(external_id)


@given(any_id)
@settings(max_examples=500)
def test_encode_is_safe_decodable_and_bounded(doc_id: str) -> None:
    external_id = encode(doc_id)
    assert_panda_safe(external_id)
    assert decode(external_id) == doc_id
    assert encode(doc_id) == external_id  # deterministic
    assert len(external_id) <= 1 + 8 * len(doc_id)


@given(st.lists(any_id, min_size=2, max_size=30, unique=True))
def test_distinct_ids_get_distinct_external_ids(doc_ids: list[str]) -> None:
    assert len({encode(doc_id) for doc_id in doc_ids}) == len(doc_ids)


@given(any_id, any_id)
def test_equal_external_ids_mean_equal_ids(a: str, b: str) -> None:
    assert (encode(a) == encode(b)) == (a == b)


@given(safe_id)
def test_safe_ids_are_unchanged(doc_id: str) -> None:
    assert is_unchanged(doc_id)
    assert encode(doc_id) == doc_id
    assert decode(doc_id) == doc_id


@given(st.text(st.characters(categories=["Cs"]), min_size=1))
def test_lone_surrogates_are_encoded(doc_id: str) -> None:
    assert decode(encode(doc_id)) == doc_id


@given(st.text(st.sampled_from("_-aZ09f:")))
def test_decode_accepts_only_what_encode_produces(text: str) -> None:
    try:
        doc_id = decode(text)
    except ValueError:
        return
    assert encode(doc_id) == text


@pytest.mark.parametrize(
    ("doc_id", "external_id"),
    [
        ("user:42", "_user_3a_42"),
        ("org.example/7", "_org_2e_example_2f_7"),
        ("Zürich", "_Z_fc_rich"),
        ("a b", "_a_20_b"),
        ("_design/x", "__5f_design_2f_x"),
        ("_x", "__5f_x"),
        ("AND", "_AND"),
        ("OR", "_OR"),
        ("NOT", "_NOT"),
        ("and", "and"),  # Lucene operators are upper case only
        ("Not", "Not"),
        ("ANDY", "ANDY"),
        ("-x", "_-x"),
        ("x-", "x-"),
        ("a-b-c", "a-b-c"),
        ("007", "007"),
        ("", "_"),
        ("a\n", "_a_a_"),
        ("\x00", "__0_"),
        ("😀", "__1f600_"),
        ("\U0010ffff", "__10ffff_"),
        ("x" * 200, "x" * 200),
        ("é" * 200, "_" + "_e9_" * 200),
    ],
)
def test_examples(doc_id: str, external_id: str) -> None:
    assert encode(doc_id) == external_id
    assert decode(external_id) == doc_id
    assert_panda_safe(external_id)


@pytest.mark.parametrize(
    "external_id",
    [
        "",  # PANDA refuses it; encode("") is "_"
        "-x",  # leading dash
        "AND",
        "a b",
        "a:b",
        "Zürich",
        "x_y",  # '_' only appears in escaped ids
        "_abc",  # would have stayed unchanged
        "__5F_x",  # upper-case hex
        "__05f_x",  # leading zero
        "_a_61_",  # 'a' needs no escape
        "_a_",  # empty escape
        "_a_3a",  # unterminated escape
        "_a_zz_",  # not hex
        "_a_110000_",  # beyond U+10FFFF
        "_a_1234567_",  # too many digits
        "_:",  # not an allowed character
    ],
)
def test_decode_rejects_what_encode_never_produces(external_id: str) -> None:
    with pytest.raises(ValueError):
        decode(external_id)


@pytest.mark.parametrize(
    ("external_id", "valid"),
    [
        ("abc", True),
        ("a_b-c", True),
        ("_", True),
        ("x-", True),
        ("and", True),
        ("", False),
        ("-x", False),
        ("AND", False),
        ("OR", False),
        ("NOT", False),
        ("abc\n", False),  # passes PANDA's re.match('^...$'), but no URL can reach it
        ("a b", False),
        ("é", False),
        ("a.b", False),
    ],
)
def test_is_valid(external_id: str, valid: bool) -> None:
    assert is_valid(external_id) is valid


DOC: dict[str, Any] = {
    "_id": "job:7",
    "type": "job",
    "number": 7,
    "ratio": 1.5,
    "open": True,
    "closed": False,
    "empty": "",
    "nothing": None,
    "job": {"employer": "Acme", "site": {"city": "Oslo"}, "tags": ["a"]},
    "job.employer": "top-level key with a dot",
    "list": [1, 2],
    "object": {"a": 1},
    "infinite": float("inf"),
}


@pytest.mark.parametrize(
    ("pattern", "fields", "rendered"),
    [
        ("{type}-{number}", ("type", "number"), "job-7"),
        ("{_id}", ("_id",), "job:7"),
        ("{ratio}", ("ratio",), "1.5"),
        ("{open}/{closed}", ("open", "closed"), "true/false"),
        ("{job.site.city}", ("job.site.city",), "Oslo"),
        ("{job.employer}", ("job.employer",), "top-level key with a dot"),  # exact top-level key wins
        ("x{empty}y", ("empty",), "xy"),
        ("{{{type}}}", ("type",), "{job}"),
        ("id {number} of {type}", ("number", "type"), "id 7 of job"),
    ],
)
def test_template_renders(pattern: str, fields: tuple[str, ...], rendered: str) -> None:
    template = compile_template(pattern)
    assert template.fields == fields
    assert template.render(DOC) == rendered


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("{missing}", "field 'missing' is missing"),
        ("{job.missing}", "field 'job.missing' is missing"),
        ("{type.sub}", "field 'type.sub' is missing"),
        ("{nothing}", "field 'nothing' is null"),
        ("{list}", "field 'list' is an array"),
        ("{object}", "field 'object' is an object"),
        ("{job.tags}", "field 'job.tags' is an array"),
        ("{infinite}", "field 'infinite' is inf, not a finite number"),
    ],
)
def test_template_refuses_unusable_fields(pattern: str, reason: str) -> None:
    with pytest.raises(MappingError) as caught:
        compile_template(pattern).render(DOC)
    assert str(caught.value).startswith(f"external_id template {pattern!r}: {reason}")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "names no field"),
        ("constant", "names no field"),
        ("{{literal}}", "names no field"),
        ("{}", "empty field name at offset 0"),
        ("a{ }", "empty field name at offset 1"),
        ("{type", "unmatched '{' at offset 0"),
        ("type}", "unmatched '}' at offset 4"),
        ("{a{b}}", "unmatched '{' at offset 0"),
    ],
)
def test_bad_template_is_a_config_error(pattern: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        compile_template(pattern)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("_id", "job:7"),
        ("number", "7"),
        ("job.site.city", "Oslo"),
        ("job.employer", "top-level key with a dot"),
    ],
)
def test_field_value(path: str, expected: str) -> None:
    assert field_value(DOC, path) == expected


def test_rendered_ids_go_through_encode() -> None:
    rendered = compile_template("{type}:{number}").render(DOC)
    assert rendered == "job:7"
    assert encode(rendered) == "_job_3a_7"
