"""PANDA's request rules as pure functions: external_id, data length, bulk bodies, column parameters, paging.

Every rule cites the section of the PANDA API contract (panda-api.md, "contract N") it follows.
Nothing here touches sockets, clocks or emulator state.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CANNED_ERROR",
    "LOCKED_TEXT",
    "INVALID_DATA_TEXT",
    "NAME_REQUIRED",
    "KNOWN_TYPES",
    "Refusal",
    "Refused",
    "bulk_id_ok",
    "url_segment_ok",
    "field_errors",
    "dataset_errors",
    "bulk_objects",
    "check_bulk_objects",
    "check_single",
    "single_external_id",
    "delete_breaks_solr",
    "column_schema",
    "plain_columns",
    "typing_fails",
    "parse_paging",
    "slugify",
    "content_type_ok",
]

# contract 2: the canned body of every unexpected exception under DEBUG = False.
CANNED_ERROR: dict[str, str] = {
    "error_message": "Sorry, this request could not be processed. Please try again later."
}
LOCKED_TEXT = "Dataset is currently locked by another process."  # contract 10
INVALID_DATA_TEXT = "Invalid data sent."  # contract 6, step 2
NAME_REQUIRED: dict[str, Any] = {"dataset": {"name": ["This field is required."]}}  # contract 5
MSG_DATA_REQUIRED = "The data field is required."
MSG_ID_NOT_STRING = "external_id must be a string."
MSG_ID_CHARS = "external_id can only contain letters, numbers, underscores and dashes."
MSG_NO_COLUMNS = "Can not create or modify data for a dataset without columns."
KNOWN_TYPES = frozenset({"unicode", "int", "float", "bool", "date", "time", "datetime"})  # contract 4

# contract 7: Python 2 re.match without re.UNICODE, so ASCII only; `$` also matches before a final "\n".
_BULK_ID = re.compile(r"^[\w\d_-]+$", re.ASCII)
# contract 1: URL segments are matched after percent-decoding, with Unicode \w.
_URL_SEGMENT = re.compile(r"[\w\d_-]+")
_INTEGER = re.compile(r"\s*[+-]?\d+\s*", re.ASCII)  # what Python 2 int() accepts (no "1_000")
_COLUMN_ERRORS = (
    'The "columns" argument must also be specified when specifying "typed_columns".',
    'The "typed_columns" argument must be a comma-separated list of True/False values with the same number '
    'of values as the "columns" argument.',
    'The "columns" argument must also be specified when specifying "column_types".',
    'The "column_types" argument must be a comma-separated list of types with the same number of values as '
    'the "columns" argument.',
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An error answer: a status and either a JSON body or a text/html body."""

    status: int
    """The HTTP status."""
    json: Any = None
    """The JSON body, or None for a text body."""
    text: str = ""
    """The text/html body when `json` is None."""


class Refused(Exception):
    """Carries a Refusal out of a handler (Tastypie's ImmediateHttpResponse)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.status)
        self.refusal = refusal


SERVER_ERROR = Refusal(500, json=CANNED_ERROR)


def bulk_id_ok(value: str) -> bool:
    """True when a bulk write accepts this external_id string (contract 7)."""
    return _BULK_ID.match(value) is not None


def url_segment_ok(value: str) -> bool:
    """True when a decoded URL segment (slug or external_id) matches PANDA's URL patterns (contract 1)."""
    return _URL_SEGMENT.fullmatch(value) is not None


def field_errors(obj: Mapping[str, Any]) -> dict[str, list[str]]:
    """The field checks of a bulk object (contract 6, step 4.2); empty when it passes."""
    errors: dict[str, list[str]] = {}
    if not obj.get("data"):
        errors["data"] = [MSG_DATA_REQUIRED]
    if "external_id" in obj:
        value = obj["external_id"]
        if not isinstance(value, str):
            errors["external_id"] = [MSG_ID_NOT_STRING]
        elif not bulk_id_ok(value):
            errors["external_id"] = [MSG_ID_CHARS]
    return errors


def dataset_errors(data: Any, columns: Sequence[Any] | None) -> Refusal | None:
    """The dataset checks of one row (contracts 6 step 4.3 and 8); PANDA only calls len() on `data`."""
    if not isinstance(data, (list, str, dict)):
        return SERVER_ERROR  # len() of a number, a boolean or null raises: 500
    if columns is None:
        return Refusal(400, json={"dataset": [MSG_NO_COLUMNS]})
    if len(data) != len(columns):
        return Refusal(400, json={"data": ["Got %d data fields. Expected %d." % (len(data), len(columns))]})
    return None


def bulk_objects(body: Any) -> list[Any]:
    """The `objects` of a bulk body, with Python's semantics for odd bodies (contract 6, step 2).

    Raises Refused: 400 "Invalid data sent." without `objects`, 500 where Python would raise.
    """
    if isinstance(body, (dict, list, str)):
        if "objects" not in body:
            raise Refused(Refusal(400, text=INVALID_DATA_TEXT))
        if not isinstance(body, dict):
            raise Refused(SERVER_ERROR)  # list["objects"] / str["objects"] raise TypeError
        objects = body["objects"]
        if isinstance(objects, (list, str, dict)):
            return list(objects)  # iterating a dict yields keys, a string its characters
    raise Refused(SERVER_ERROR)


def check_bulk_objects(objects: Sequence[Any], columns: Sequence[Any] | None) -> Refusal | None:
    """Validate objects in order and stop at the first failure (contract 6, step 4); None when all pass."""
    for obj in objects:
        if not isinstance(obj, dict):
            return SERVER_ERROR
        errors = field_errors(obj)
        if errors:
            return Refusal(400, json={"data": errors})
        refusal = dataset_errors(obj["data"], columns)
        if refusal is not None:
            return refusal
    return None


def check_single(body: Any, columns: Sequence[Any] | None) -> Refusal | None:
    """Validate a single-row write: no field checks, only the dataset checks (contract 6, single row)."""
    if not isinstance(body, dict) or "data" not in body:
        return SERVER_ERROR
    return dataset_errors(body["data"], columns)


def _py2_unicode(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return value if isinstance(value, str) else str(value)


def single_external_id(body: Mapping[str, Any], url_id: str | None) -> str | None:
    """The id a single write stores: the body's beats the URL's; a false-like one means none (contract 6)."""
    value = body["external_id"] if "external_id" in body else url_id
    if not value:
        return None
    return _py2_unicode(value)


def delete_breaks_solr(external_id: str) -> bool:
    """True for ids Solr's delete-by-query cannot parse: a leading '-', or AND/OR/NOT (contracts 7, 12)."""
    return external_id.startswith("-") or external_id in ("AND", "OR", "NOT")


def slugify(value: str) -> str:
    """Django 1.4's slugify: fold to ASCII, drop other characters, lower-case, spaces to '-'."""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    folded = re.sub(r"[^\w\s-]", "", folded).strip().lower()
    return re.sub(r"[-\s]+", "-", folded)


def column_schema(query: Mapping[str, str]) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Columns from ?columns=, typed_columns=, column_types= (contract 5): (schema, error text).

    Names are split on commas with no trimming; an error text means the dataset is saved without columns.
    """
    names = query["columns"].split(",") if "columns" in query else None
    typed: list[bool] | None = None
    types: list[str | None] | None = None
    if "typed_columns" in query:
        if names is None:
            return None, _COLUMN_ERRORS[0]
        typed = [item.lower() == "true" for item in query["typed_columns"].split(",")]
        if len(typed) != len(names):
            return None, _COLUMN_ERRORS[1]
    if "column_types" in query:
        if names is None:
            return None, _COLUMN_ERRORS[2]
        types = [item.lower() or None for item in query["column_types"].split(",")]
        if len(types) != len(names):
            return None, _COLUMN_ERRORS[3]
    if names is None:
        return None, None
    return [
        _column(name, types[i] if types else None, typed[i] if typed else False)
        for i, name in enumerate(names)
    ], None


def plain_columns(names: Sequence[str]) -> list[dict[str, Any]]:
    """Column objects for untyped, unindexed columns, as `?columns=` alone creates them (contract 4)."""
    return [_column(name, None, False) for name in names]


def _column(name: str, kind: str | None, indexed: bool) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "indexed": indexed,
        "indexed_name": "column_%s_%s" % (kind, slugify(name)) if indexed and kind else None,
        "min": None,
        "max": None,
    }


def typing_fails(columns: Sequence[Mapping[str, Any]] | None, rows: Sequence[Any]) -> bool:
    """True when typing the rows for indexed columns raises, which PANDA answers with 500 (contract 9)."""
    indexed = [(i, c.get("type")) for i, c in enumerate(columns or ()) if c.get("indexed") and c.get("type")]
    if not indexed:
        return False
    if any(kind not in KNOWN_TYPES for _, kind in indexed):
        return True  # an unknown type on an indexed column fails every write
    for data in rows:
        if not isinstance(data, list):
            continue
        for i, kind in indexed:
            cell = data[i] if i < len(data) else None
            if kind in ("int", "float") and isinstance(cell, (list, dict)):
                return True
            if kind in ("date", "time", "datetime") and cell and not isinstance(cell, str):
                return True
    return False


def parse_paging(query: Mapping[str, str]) -> tuple[int, int, int]:
    """(rows to return, offset, meta.limit) of a data listing (contract 11); Refused(500) on bad values.

    Without `limit` Solr returns 50 rows while meta says 20; meta.limit is capped at 1000, the rows are not.
    """
    raw_limit = query.get("limit")
    raw_offset = query.get("offset", "0")
    for raw in (raw_limit, raw_offset):
        if raw is not None and not _INTEGER.fullmatch(raw):
            raise Refused(SERVER_ERROR)
    offset = int(raw_offset)
    if raw_limit is None:
        rows, meta_limit = 50, 20
    else:
        rows = meta_limit = int(raw_limit)
    if rows < 0 or offset < 0:
        raise Refused(SERVER_ERROR)  # contract 17.6: Solr's error, probably a 500
    return rows, offset, min(meta_limit, 1000)


def parse_list_paging(query: Mapping[str, str]) -> tuple[int, int]:
    """(limit, offset) of the dataset list: Tastypie's Paginator, 20 by default, 0 for all (D); Refused(500)
    on values that are not non-negative integers."""
    raw_limit, raw_offset = query.get("limit", "20"), query.get("offset", "0")
    if not _INTEGER.fullmatch(raw_limit) or not _INTEGER.fullmatch(raw_offset):
        raise Refused(SERVER_ERROR)
    limit, offset = int(raw_limit), int(raw_offset)
    if limit < 0 or offset < 0:
        raise Refused(SERVER_ERROR)
    return limit, offset


def content_type_ok(value: str | None) -> bool:
    """True when the media type is exactly application/json; parameters are ignored (contract 1)."""
    return bool(value) and str(value).split(";", 1)[0].strip() == "application/json"
