"""Every key of every section is type-checked at start, by name; secrets never appear in a message."""

from __future__ import annotations

import threading
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from bridge.config.loader import load_settings, parse_override
from bridge.config.settings import Settings
from bridge.errors import ConfigError
from bridge.run.builder import Bridge

BASE: dict[tuple[str, str], Any] = {
    ("source", "database"): "db",
    ("panda", "email"): "panda@pandaproject.net",
    ("panda", "dataset"): "people",
    ("mapping", "columns"): ["name"],
}
ENV = {"PANDA_API_KEY": "k"}
SECTIONS: dict[str, type] = dict(typing.get_type_hints(Settings))  # every section, also ones added later


def _wrong_value(hint: Any) -> Any:
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        return "yes"
    if origin in (int, float):
        return "many"
    if origin is str:
        return 5
    if origin is list:
        return [1, 2]
    if typing.get_args(hint)[1:] == (str,):
        return {"name": 5}
    return 5  # a dict[str, Any]


CASES = [(section, f.name, _wrong_value(typing.get_type_hints(cls)[f.name]))
         for section, cls in SECTIONS.items() for f in fields(cls)]


@pytest.mark.parametrize(("section", "key", "value"), CASES, ids=[f"{s}.{k}" for s, k, _v in CASES])
def test_every_key_of_every_section_is_type_checked_by_name(tmp_path: Path, section: str, key: str,
                                                           value: Any) -> None:
    overrides = {**BASE, ("checkpoint", "path"): str(tmp_path / "state"), (section, key): value}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, overrides, env=ENV)
    assert key in str(caught.value)


EVENTS = [
    ({"delete_events": "delete"}, "delete_events"),  # a string would match "let" as a substring
    ({"ignore_events": "heartbeat"}, "ignore_events"),
    ({"event_types": "update"}, "event_types"),
    ({"event_types": [1]}, "event_types"),
    ({"id_path": 5}, "id_path"),
    ({"doc_path": ["doc"]}, "doc_path"),
    ({"deleted_path": True}, "deleted_path"),
    ({"id_pth": "id"}, "id_pth"),
]


@pytest.mark.parametrize(("events", "key"), EVENTS, ids=[key for _e, key in EVENTS])
def test_source_events_keys_are_type_checked_at_start(tmp_path: Path, events: dict[str, Any], key: str) -> None:
    overrides = {**BASE, ("source", "kind"): "sse", ("source", "url"): "http://127.0.0.1:9/events",
                 ("source", "events"): events, ("checkpoint", "path"): str(tmp_path / "state")}
    settings = load_settings(None, overrides, env=ENV)
    with pytest.raises(ConfigError) as caught:
        Bridge(settings, threading.Event()).close()
    assert key in str(caught.value) and "[source.events]" in str(caught.value)


SECRET = 98765432


@pytest.mark.parametrize(("key", "value"), [(("panda", "api_key"), SECRET), (("panda", "api_key"), [SECRET]),
                                            (("source", "password"), SECRET), (("source", "password"), True)])
def test_a_mistyped_secret_is_never_echoed(tmp_path: Path, key: tuple[str, str], value: Any) -> None:
    overrides = {**BASE, ("checkpoint", "path"): str(tmp_path / "state"), key: value}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, overrides, env=ENV)
    assert key[1] in str(caught.value)
    assert str(SECRET) not in str(caught.value) and "True" not in str(caught.value)


def test_a_mistyped_header_value_is_not_echoed(tmp_path: Path) -> None:
    overrides = {**BASE, ("source", "headers"): {"Authorization": SECRET}}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, overrides, env=ENV)
    assert "Authorization" in str(caught.value) and str(SECRET) not in str(caught.value)


def test_reading_local_state_needs_no_api_key() -> None:
    settings = load_settings(None, BASE, env={}, secrets=False)
    assert settings.panda.api_key == ""
    with pytest.raises(ConfigError, match="api_key is required"):
        load_settings(None, BASE, env={})


def test_set_reaches_the_keys_of_nested_tables() -> None:
    overrides = {**BASE, ("mapping", "columns"): ["name", "employer"],
                 ("mapping", "fields.employer"): "job.employer", ("source", "filter_params.kind"): "x"}
    settings = load_settings(None, overrides, env=ENV)
    assert settings.mapping.fields == {"employer": "job.employer"}
    assert settings.source.filter_params == {"kind": "x"}


def test_a_set_without_its_equals_sign_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_override(f"panda.api_key:{SECRET}")
    assert "no '='" in str(caught.value) and str(SECRET) not in str(caught.value)
