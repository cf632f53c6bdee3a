"""`bridge run|once` over several pipelines: finds the pattern databases, shards, starts the supervisor.

Pattern tables are expanded from `_all_dbs` at start; while running (`bridge run`), a DatabaseWatch per
pattern table starts the pipeline of a matching database created later and stops the one of a database
deleted. `--shard K/N` keeps only the pipelines this process owns (config/shard.py), new ones included.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence

from bridge import stopping
from bridge.config.pipelines import PatternTable, Pipeline, PipelineConfig, check_distinct, select
from bridge.config.shard import Shard, shard_of
from bridge.errors import BridgeError, ConfigError, NotFoundError
from bridge.model import Seq
from bridge.ops.many import ManyObservers
from bridge.run.gate import gates_for
from bridge.run.supervisor import Supervisor
from bridge.source.databases import DatabaseList, DatabaseWatch

__all__ = ["resolve", "run_fleet", "list_pattern_databases"]

logger = logging.getLogger(__name__)


def list_pattern_databases(patterns: Iterable[PatternTable]) -> dict[str, list[str]]:
    """Each pattern table's server's databases; ConfigError when one cannot be listed."""
    found: dict[str, list[str]] = {}
    for pattern in patterns:
        databases = DatabaseList(pattern.source_settings().source)
        try:
            found[pattern.name] = databases.all_dbs()
        except BridgeError as exc:
            raise ConfigError(f"[pipelines.{pattern.name}] cannot list the databases of {databases.server}: "
                              f"{type(exc).__name__}: {exc}") from None
        finally:
            databases.close()
    return found


def resolve(config: PipelineConfig, names: Sequence[str], shard: Shard) -> list[Pipeline]:
    """The pipelines a command acts on: every one (patterns expanded), this shard's, then those named."""
    every = config.expand(list_pattern_databases(config.patterns) if config.patterns else None)
    mine = [pipeline for pipeline in every if shard.owns(pipeline.name)]
    if names:
        return select(every if shard.count == 1 else mine, names)
    return mine


def run_fleet(config: PipelineConfig, pipelines: list[Pipeline], since: str | Seq | None, *, follow: bool,
              fail_fast: bool, listen: str, names: Sequence[str], shard: Shard) -> int:
    """Run the pipelines until every one stopped; the exit code of the first fatal error, else 0.

    Raises ConfigError for `bridge run` on a shard that owns no pipeline and watches no pattern: it would
    never have work (its configuration is read once), and exiting 0 would look like a clean stop.
    """
    watching = follow and not names and bool(config.patterns)
    if not pipelines and not watching:
        empty = _empty_shard(config, shard)
        if follow:
            raise ConfigError(f"{empty}: this `bridge run` would never have work; run fewer replicas, or give "
                              "this one a pipeline")
        logger.warning("%s: nothing to do", empty)
        return 0
    stop_all = threading.Event()
    stopping.install()
    stopping.graceful(stop_all)  # from now a SIGTERM stops every pipeline cleanly
    observers = ManyObservers(listen).start()
    by_database = {p.settings.source.database: p.name for p in pipelines if p.table in _tables(config)}

    def gone(pipeline: Pipeline, error: BaseException) -> bool:
        """A pattern pipeline whose database no longer exists ended as its database did: cleanly."""
        if pipeline.table not in _tables(config) or not isinstance(error, (NotFoundError, ConfigError)):
            return False
        databases = DatabaseList(pipeline.settings.source)
        try:
            return not databases.exists(pipeline.settings.source.database)
        except BridgeError:
            return False
        finally:
            databases.close()

    supervisor = Supervisor(since, follow=follow, gates=gates_for(p.settings for p in pipelines),
                            observe=lambda p, t: observers.observe(p.name, t), fail_fast=fail_fast,
                            stop_all=stop_all, gone=gone)
    logger.info("running %d pipeline(s): %s", len(pipelines), ", ".join(p.name for p in pipelines))
    for pipeline in pipelines:
        supervisor.add(pipeline)
    watches = []
    if follow and not names:
        for pattern in config.patterns:
            watches.append(_watch(pattern, supervisor, shard, by_database, stop_all, config))
    try:
        return supervisor.run(keep_open=lambda: bool(watches) and not stop_all.is_set())
    finally:
        stop_all.set()
        observers.close()


def _empty_shard(config: PipelineConfig, shard: Shard) -> str:
    """Why this process has no pipeline: the shards the file's fixed pipelines hash to (config/shard.py)."""
    fixed = sorted({shard_of(pipeline.name, shard.count) for pipeline in config.pipelines})
    where = (f"its {len(config.pipelines)} fixed pipeline(s) hash to shard(s) {', '.join(map(str, fixed))}"
             if fixed else "it has no fixed pipelines")
    patterns = ", and no database matching its pattern tables does" if config.patterns else ""
    return f"shard {shard.index}/{shard.count} owns no pipeline of this file: {where}{patterns}"


def _tables(config: PipelineConfig) -> set[str]:
    return {pattern.name for pattern in config.patterns}


def _watch(pattern: PatternTable, supervisor: Supervisor, shard: Shard, by_database: dict[str, str],
           stop: threading.Event, config: PipelineConfig) -> DatabaseWatch:
    databases = DatabaseList(pattern.source_settings().source)
    known = set(databases.all_dbs())

    def created(database: str) -> None:
        if not pattern.matches(database):
            return
        try:
            pipeline = pattern.expand(database)
            check_distinct([*config.pipelines, pipeline])
        except ConfigError as exc:
            logger.error("database %r matches [pipelines.%s] but cannot be mirrored: %s", database,
                         pattern.name, exc)
            return
        if not shard.owns(pipeline.name):
            return
        by_database[database] = pipeline.name
        if supervisor.add(pipeline):
            logger.info("database %r created: started pipeline %s", database, pipeline.name)

    def deleted(database: str) -> None:
        name = by_database.get(database)
        if name is not None:
            logger.info("database %r deleted: stopping pipeline %s", database, name)
            supervisor.stop(name)

    return DatabaseWatch(databases, known, created=created, deleted=deleted, stop=stop).start()
