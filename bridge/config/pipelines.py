"""The pipelines of one configuration file: `[pipelines.<name>]` tables over top-level defaults, and patterns.

Rules, in the order they apply:
- Top-level sections (`[source]`, `[panda]`, ...) are defaults: each `[pipelines.<name>.<section>]` key wins
  over the same key there (a nested table such as `mapping.fields` is replaced whole, not merged).
- A file without `[pipelines]` is one pipeline named after its dataset, state file as configured
  (default `state/bridge.checkpoint`, as before pipelines existed).
- In `[pipelines]`, a name is letters, digits, `-` and `_`; its state file defaults to `state/<name>.checkpoint`.
- A table with `source.databases` (glob patterns) is a pattern: one pipeline per matching database, named by
  the database's slug (database_slug), its dataset `panda.dataset_template` and its state file
  `checkpoint.path_template`, both with `{database}` replaced by that slug.
- Two pipelines may not share a name, a state file or a dead-letter file (ConfigError before anything starts).
Pure apart from reading the file: the databases a pattern matches are handed in by the caller.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config.loader import build_settings, read_config
from bridge.config.settings import Settings
from bridge.errors import ConfigError

__all__ = ["Pipeline", "PatternTable", "PipelineConfig", "load_pipelines", "database_slug", "check_distinct",
           "select"]

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SLUG_SAFE = re.compile(r"[a-z0-9_-]+")
_PATTERN_KEYS = (("source", "databases"), ("panda", "dataset_template"), ("checkpoint", "path_template"))
DEFAULT_DATASET_TEMPLATE = "{database}"
DEFAULT_PATH_TEMPLATE = "state/{database}.checkpoint"


@dataclass(frozen=True)
class Pipeline:
    """One database -> dataset pair with its own settings."""

    name: str
    """Letters, digits, `-` and `_`: the metrics label, the log field, what `--pipeline` selects."""
    settings: Settings
    table: str = ""
    """The `[pipelines.<table>]` it came from ("" for a file without `[pipelines]`)."""


@dataclass(frozen=True)
class PatternTable:
    """A `[pipelines.<name>]` table with `source.databases`: a pipeline for each database it matches."""

    name: str
    patterns: tuple[str, ...]
    dataset_template: str
    path_template: str
    sections: Mapping[str, Any] = field(repr=False)
    """The table's sections over the defaults, without the pattern keys and without `source.database`."""
    overrides: Mapping[tuple[str, str], Any] = field(repr=False, default_factory=dict)
    env: Mapping[str, str] | None = field(repr=False, default=None)
    secrets: bool = True

    def matches(self, database: str) -> bool:
        """True for a database one of the patterns matches (system databases, `_...`, never match)."""
        return not database.startswith("_") and any(fnmatch.fnmatchcase(database, p) for p in self.patterns)

    def source_settings(self) -> Settings:
        """Settings for reaching the server the databases are listed from (with a placeholder database)."""
        return self.expand("placeholder").settings

    def expand(self, database: str) -> Pipeline:
        """The pipeline of one matching database; ConfigError when its slug or settings are invalid."""
        slug = database_slug(database)
        sections = {name: dict(values) for name, values in self.sections.items()}
        sections.setdefault("source", {})["database"] = database
        sections.setdefault("panda", {})["dataset"] = self.dataset_template.replace("{database}", slug)
        sections.setdefault("checkpoint", {})["path"] = self.path_template.replace("{database}", slug)
        settings = _build(f"pipelines.{self.name} (database {database!r})", sections, self.overrides, self.env,
                          self.secrets)
        return Pipeline(slug, settings, self.name)


@dataclass(frozen=True)
class PipelineConfig:
    """What a configuration file asks for: fixed pipelines and pattern tables."""

    pipelines: tuple[Pipeline, ...]
    patterns: tuple[PatternTable, ...] = ()

    def expand(self, databases: Mapping[str, Iterable[str]] | None = None) -> list[Pipeline]:
        """Every pipeline: the fixed ones, then one per database each pattern matches, sorted by name.

        `databases` maps a pattern table's name to the databases its server lists. Checks distinctness.
        """
        found = list(self.pipelines)
        for pattern in self.patterns:
            for database in sorted((databases or {}).get(pattern.name, ())):
                if pattern.matches(database):
                    found.append(pattern.expand(database))
        check_distinct(found)
        return found


def database_slug(database: str) -> str:
    """A PANDA dataset slug (and pipeline name) for a CouchDB database name, the same on every run.

    A name that is already a slug (lower-case letters, digits, `_`, `-`) is kept; any other (CouchDB also
    allows `$()+/`) becomes its safe characters joined by `-`, plus the first 8 hex digits of the name's
    SHA-256, so two names never share a slug by accident. ConfigError for a name that makes no slug.
    """
    if _SLUG_SAFE.fullmatch(database) and database != "schema":
        return database
    safe = "-".join(part for part in re.split(r"[^a-z0-9_-]+", database.lower()) if part)
    digest = hashlib.sha256(database.encode()).hexdigest()[:8]
    slug = f"{safe}-{digest}" if safe else digest
    if not _NAME.fullmatch(slug):
        raise ConfigError(f"database {database!r} gives no valid dataset slug")
    return slug


def load_pipelines(
    path: Path | None,
    overrides: Mapping[tuple[str, str], Any] = {},
    env: Mapping[str, str] | None = None,
    *,
    secrets: bool = True,
) -> PipelineConfig:
    """Read the file and build every fixed pipeline and pattern table; raises ConfigError naming the table."""
    raw = dict(read_config(path)) if path else {}
    tables = raw.pop("pipelines", None)
    if tables is None:
        for section, key in _PATTERN_KEYS:
            if key in (raw.get(section) or {}):
                raise ConfigError(f"[{section}] {key} is for a [pipelines.<name>] table; put the pattern in one")
        settings = build_settings(raw, overrides, env, secrets=secrets)
        single = Pipeline(settings.panda.dataset, settings)
        return PipelineConfig((single,))
    if not isinstance(tables, dict) or not tables or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError("[pipelines] must hold at least one [pipelines.<name>] table")
    fixed: list[Pipeline] = []
    patterns: list[PatternTable] = []
    for name, table in tables.items():
        if not _NAME.fullmatch(name):
            raise ConfigError(f"[pipelines.{name}]: a pipeline name is letters, digits, '-' and '_'")
        sections = _merge(raw, table)
        picked = {(section, key): sections.get(section, {}).pop(key)
                  for section, key in _PATTERN_KEYS if key in sections.get(section, {})}
        if ("source", "databases") in picked:
            patterns.append(_pattern(name, sections, picked, overrides, env, secrets))
            continue
        if picked:
            keys = ", ".join(f"{section}.{key}" for section, key in picked)
            raise ConfigError(f"[pipelines.{name}] {keys} need source.databases (the patterns they expand)")
        sections.setdefault("checkpoint", {}).setdefault("path", f"state/{name}.checkpoint")
        fixed.append(Pipeline(name, _build(f"pipelines.{name}", sections, overrides, env, secrets), name))
    check_distinct(fixed)
    return PipelineConfig(tuple(fixed), tuple(patterns))


def _pattern(name: str, sections: dict[str, dict[str, Any]], picked: Mapping[tuple[str, str], Any],
             overrides: Mapping[tuple[str, str], Any], env: Mapping[str, str] | None, secrets: bool) -> PatternTable:
    where = f"[pipelines.{name}]"
    databases = picked[("source", "databases")]
    if isinstance(databases, str):
        databases = [databases]
    if not isinstance(databases, list) or not databases or not all(isinstance(d, str) and d for d in databases):
        raise ConfigError(f"{where} source.databases must be a list of glob patterns such as [\"elections-*\"]")
    for section, key in (("source", "database"), ("panda", "dataset"), ("checkpoint", "path")):
        if key in sections.get(section, {}):
            raise ConfigError(f"{where} sets {section}.{key}, which source.databases derives per database "
                              "(use panda.dataset_template and checkpoint.path_template)")
    templates = {key: picked.get((section, key), default) for section, key, default in (
        ("panda", "dataset_template", DEFAULT_DATASET_TEMPLATE),
        ("checkpoint", "path_template", DEFAULT_PATH_TEMPLATE))}
    for key, template in templates.items():
        if not isinstance(template, str) or "{database}" not in template:
            raise ConfigError(f"{where} {key} must be text holding {{database}}, got {template!r}")
    return PatternTable(name, tuple(databases), templates["dataset_template"], templates["path_template"], sections,
                        dict(overrides), env, secrets)


def _merge(defaults: Mapping[str, Any], table: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for section in {*defaults, *table}:
        base, own = defaults.get(section) or {}, table.get(section) or {}
        if not isinstance(base, dict) or not isinstance(own, dict):
            raise ConfigError(f"[{section}] must be a table")
        merged[section] = {**base, **own}
    return merged


def _build(where: str, sections: Mapping[str, Any], overrides: Mapping[tuple[str, str], Any],
           env: Mapping[str, str] | None, secrets: bool) -> Settings:
    try:
        return build_settings(sections, overrides, env, secrets=secrets)
    except ConfigError as exc:
        raise ConfigError(f"[{where}] {exc}") from None


def check_distinct(pipelines: Iterable[Pipeline]) -> None:
    """ConfigError when two pipelines share a name, a state file or a dead-letter file."""
    names: set[str] = set()
    seen: dict[tuple[str, str], str] = {}
    for pipeline in pipelines:
        if pipeline.name in names:
            raise ConfigError(f"two pipelines are named {pipeline.name!r}; each needs its own name")
        names.add(pipeline.name)
        checkpoint = pipeline.settings.checkpoint
        for what, value in (("state file", os.path.abspath(checkpoint.path)),
                            ("dead-letter file", os.path.abspath(checkpoint.deadletter_path))):
            other = seen.setdefault((what, value), pipeline.name)
            if other != pipeline.name:
                raise ConfigError(f"pipelines {other!r} and {pipeline.name!r} share the {what} {value}; "
                                  "give each its own [checkpoint] path")


def select(pipelines: Iterable[Pipeline], names: Iterable[str]) -> list[Pipeline]:
    """The pipelines named (all when `names` is empty); ConfigError naming an unknown name."""
    every = list(pipelines)
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return every
    known = {pipeline.name: pipeline for pipeline in every}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(f"--pipeline {', '.join(unknown)}: no such pipeline; known: {sorted(known)}")
    return [known[name] for name in wanted]
