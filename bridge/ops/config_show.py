"""`bridge config show`: the effective configuration as TOML, every secret replaced by "***".

Effective means after the file, `--set` and its shortcuts, and the environment (COUCHDB_PASSWORD,
PANDA_API_KEY), with every default filled in, so what it prints is exactly what a run would use.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tomli_w

from bridge.config.settings import Settings

__all__ = ["MASK", "render_settings"]

MASK = "***"
_SECRET_FIELDS = {("source", "password"), ("panda", "api_key")}
_SECRET_HEADER = re.compile(r"authorization|cookie|token|secret|key|password", re.IGNORECASE)


def _mask_url(url: str) -> str:
    """The URL with a password in it replaced by the mask (the user name is not a secret)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _section(name: str, values: dict[str, Any]) -> dict[str, Any]:
    shown = {key: value for key, value in values.items() if value is not None}  # TOML has no null: unset
    for section, key in _SECRET_FIELDS:
        if section == name and shown.get(key):
            shown[key] = MASK
    if isinstance(shown.get("url"), str):
        shown["url"] = _mask_url(shown["url"])
    if isinstance(shown.get("headers"), dict):
        shown["headers"] = {header: MASK if _SECRET_HEADER.search(header) else value
                            for header, value in shown["headers"].items()}
    return shown


def render_settings(settings: Settings) -> str:
    """The settings as a TOML document, one table per section, secrets masked."""
    document = {field.name: _section(field.name, dataclasses.asdict(getattr(settings, field.name)))
                for field in dataclasses.fields(settings)}
    return tomli_w.dumps(document)
