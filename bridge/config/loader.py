"""Builds Settings from a TOML file, command-line overrides and environment variables.

Precedence, highest first: a command-line option (`--set section.key=value` or its named shortcut), the
secret's environment variable (COUCHDB_PASSWORD, PANDA_API_KEY), the TOML file, the field's default.
Unknown sections and keys are errors; values are checked against the field's type before the dataclass
validates them.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from bridge.config.settings import (
    BatchSettings,
    CheckpointSettings,
    HttpSettings,
    LogSettings,
    MappingSettings,
    PandaSettings,
    RetrySettings,
    Settings,
    SourceSettings,
    VerifySettings,
)
from bridge.errors import ConfigError

__all__ = ["load_settings", "read_config", "build_settings", "parse_override", "SECTIONS"]

_SECTIONS: dict[str, type] = {
    "source": SourceSettings,
    "panda": PandaSettings,
    "mapping": MappingSettings,
    "checkpoint": CheckpointSettings,
    "batch": BatchSettings,
    "retry": RetrySettings,
    "verify": VerifySettings,
    "http": HttpSettings,
    "log": LogSettings,
}
SECTIONS = frozenset(_SECTIONS)
"""The section names a pipeline may hold."""
_SECRETS = {("source", "password"): "COUCHDB_PASSWORD", ("panda", "api_key"): "PANDA_API_KEY"}


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split `section.key=value`; the value is read as TOML when it parses, else kept as text."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep:  # the whole argument may be a value typed without its '=' (a secret): not echoed
        raise ConfigError("--set wants section.key=value: the argument has no '='")
    if not dot or not key:
        raise ConfigError(f"--set wants section.key=value, got the name {name.strip()!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None


def load_settings(
    path: Path | None,
    overrides: Mapping[tuple[str, str], Any] = {},
    env: Mapping[str, str] | None = None,
    *,
    secrets: bool = True,
) -> Settings:
    """Build validated settings; raises ConfigError naming the offending key.

    `secrets` False is for commands that only read the local state (`checkpoint show`, `deadletter list`):
    the PANDA API key may then be missing (it stays ""), since nothing is sent to PANDA.
    """
    raw = read_config(path) if path else {}
    return build_settings(raw, overrides, env, secrets=secrets)


def read_config(path: Path) -> dict[str, Any]:
    """The TOML file as a dict; raises ConfigError when it is missing or not TOML."""
    return _read_file(path)


def build_settings(
    raw: Mapping[str, Any],
    overrides: Mapping[tuple[str, str], Any] = {},
    env: Mapping[str, str] | None = None,
    *,
    secrets: bool = True,
) -> Settings:
    """Settings from the sections of one pipeline (`raw`), the environment's secrets and the overrides."""
    env = os.environ if env is None else env
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; known: {sorted(_SECTIONS)}")
    # [mapping.fields] arrives nested inside [mapping]; [source.events] inside [source].
    merged: dict[str, dict[str, Any]] = {name: dict(raw.get(name) or {}) for name in _SECTIONS}
    for (section, key), var in _SECRETS.items():
        if env.get(var):
            merged[section][key] = env[var]
    for (section, key), value in overrides.items():
        if section not in merged:
            raise ConfigError(f"unknown section {section!r} in an override; known: {sorted(_SECTIONS)}")
        table, dot, name = key.partition(".")
        if dot:  # a key of a nested table: mapping.fields.employer, source.events.delete_events
            nested = merged[section].get(table, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"[{section}] {table} is not a table, so {key!r} cannot be set")
            merged[section][table] = {**nested, name: value}
        else:
            merged[section][key] = value
    if secrets and not merged["panda"].get("api_key"):
        raise ConfigError("[panda] api_key is required (set PANDA_API_KEY)")
    built = {name: _build(cls, name, merged[name]) for name, cls in _SECTIONS.items()}
    return Settings(**built)


def _build(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.metadata.get("key", True)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in [{section}]: {unknown}; known: {sorted(known)}")
    kwargs = {key: _coerce(section, key, hints[key], value) for key, value in values.items()}
    missing = [f.name for f in known.values() if f.default is MISSING and f.default_factory is MISSING]
    if any(name not in kwargs for name in missing):
        raise ConfigError(f"[{section}] needs {missing}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}] {exc}") from None


def _coerce(section: str, key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint) or hint
    if isinstance(origin, types.UnionType):
        origin = typing.get_args(hint)[0]
    # A secret is never echoed, not even a mistyped one, nor a URL (it may carry a password): name the type.
    hidden = (section, key) in _SECRETS or key == "url"
    shown = f"a value of type {type(value).__name__}" if hidden else repr(value)
    wrong = ConfigError(f"[{section}] {key} must be {getattr(origin, '__name__', origin)}, got {shown}")
    if origin is bool:
        if not isinstance(value, bool):
            raise wrong
    elif origin is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
    elif origin is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        value = float(value)
    elif origin is str:
        if not isinstance(value, str):
            raise wrong
    elif origin is list:
        if isinstance(value, str):
            value = [item for item in value.split(",") if item]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise wrong
    elif origin is dict:
        if not isinstance(value, dict):
            raise wrong
        if typing.get_args(hint)[1:] == (str,):  # dict[str, str]: every value is text too
            bad = sorted(name for name, item in value.items() if not isinstance(item, str))
            if bad:
                raise ConfigError(f"[{section}] {key}: the values of {bad} must be strings, got "  # no value:
                                  + ", ".join(type(value[name]).__name__ for name in bad))  # headers hold tokens
    return value
