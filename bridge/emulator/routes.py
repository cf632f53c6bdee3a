"""PANDA's URL map, method check, API-key authentication and response-format choice, as pure functions.

The order in which they run is contract 2: URL match (404/301), method check (405), authentication (401).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["Route", "match_route", "slash_redirect", "ALLOWED_METHODS", "credentials", "wants_json"]

ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE")  # contract 2, step 2

_SEG = r"([\w\d_-]+)"  # contract 1: Unicode \w, after percent-decoding
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("dataset_list", re.compile(r"/api/1\.0/dataset/")),
    ("schema", re.compile(r"/api/1\.0/dataset/schema/")),  # Tastypie's schema view shadows slug "schema"
    ("dataset", re.compile(r"/api/1\.0/dataset/%s/" % _SEG)),
    ("data_list", re.compile(r"/api/1\.0/dataset/%s/data/" % _SEG)),
    ("data_detail", re.compile(r"/api/1\.0/dataset/%s/data/%s/" % (_SEG, _SEG))),
)
# Tastypie's format map; anything but JSON is answered with its "not implemented" HTML body (contract 1).
_FORMATS = (
    "application/json",
    "text/javascript",
    "application/xml",
    "text/yaml",
    "text/html",
    "application/x-plist",
)


@dataclass(frozen=True, slots=True)
class Route:
    """A matched API path."""

    kind: str
    """One of dataset_list, schema, dataset, data_list, data_detail."""
    slug: str = ""
    """The dataset slug, percent-decoded."""
    external_id: str = ""
    """The row id of a data_detail path, percent-decoded."""


def match_route(raw_path: str) -> Route | None:
    """The route of a raw (percent-encoded) path, or None when Django would answer its HTML 404."""
    try:
        path = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    except UnicodeDecodeError:
        return None
    for kind, pattern in _PATTERNS:
        found = pattern.fullmatch(path)
        if found:
            groups = found.groups()
            return Route(kind, groups[0] if groups else "", groups[1] if len(groups) > 1 else "")
    return None


def slash_redirect(raw_path: str) -> bool:
    """True when APPEND_SLASH answers 301: no final slash, and a match with one (contract 1)."""
    return not raw_path.endswith("/") and match_route(raw_path + "/") is not None


def credentials(
    headers: Iterable[tuple[str, str]], query: Mapping[str, str], *, behind_nginx: bool
) -> tuple[str, str]:
    """(email, api_key) the way PandaAuthentication reads them (contract 3); empty strings when missing.

    Django files PANDA-EMAIL and PANDA_EMAIL under one key; nginx drops names with '_' first. A non-empty
    header wins over the query parameter; the email is percent-decoded once more and lower-cased.
    """
    found: dict[str, str] = {}
    for name, value in headers:
        if behind_nginx and "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key in ("PANDA_EMAIL", "PANDA_API_KEY") and key not in found:
            found[key] = value
    email = found.get("PANDA_EMAIL") or query.get("email", "")
    api_key = found.get("PANDA_API_KEY") or query.get("api_key", "")
    return unquote(email).lower(), api_key


def _fitness(mime: str, ranges: list[tuple[str, str, float]]) -> tuple[int, float]:
    kind, _, sub = mime.partition("/")
    best = (-1, 0.0)
    for r_kind, r_sub, q in ranges:
        if r_kind in (kind, "*") and r_sub in (sub, "*"):
            fit = (100 if r_kind == kind else 0) + (10 if r_sub == sub else 0)
            if fit > best[0]:
                best = (fit, q)
    return best


def _parse_accept(accept: str) -> list[tuple[str, str, float]]:
    ranges = []
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        kind, _, sub = media.partition("/")
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 1.0
        ranges.append((kind.strip() or "*", sub.strip() or "*", q))
    return ranges


def wants_json(query: Mapping[str, str], accept: str | None) -> bool:
    """True when Tastypie answers in JSON: ?format=, then ?callback=, then Accept unless */* (contract 1)."""
    if "format" in query:
        return query["format"] == "json"
    if "callback" in query:
        return False
    if not accept or accept == "*/*":
        return True
    ranges = _parse_accept(accept)
    # mimeparse.best_match: the largest (fitness, q); ties go to the later type in sort order
    scored = sorted((_fitness(mime, ranges), mime) for mime in _FORMATS)
    (fit, q), mime = scored[-1]
    if fit < 0 or q <= 0:
        return True  # no match: Tastypie falls back to its default format, JSON
    return mime == "application/json"
