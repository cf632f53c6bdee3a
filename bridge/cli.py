"""The `bridge` command: options, logging setup, signals, exit codes.

`main(argv)` only parses; the work is done by plain functions. One error boundary: a BridgeError is
logged as `ClassName: message` and its class's exit code returned.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bridge import __version__, stopping
from bridge.config.loader import parse_override
from bridge.config.pipelines import Pipeline, PipelineConfig, load_pipelines
from bridge.config.settings import Settings
from bridge.config.shard import parse_shard
from bridge.errors import BridgeError, ConfigError
from bridge.ops.check import report, run_checks
from bridge.ops.config_show import render_settings
from bridge.ops.dryrun import DryDeadLetters, DryRunSink
from bridge.ops.logformat import configure_logging
from bridge.ops.observe import observed
from bridge.ops.status import gather_status, render_status
from bridge.run.builder import Bridge, parse_since
from bridge.run.delivery import RunStats
from bridge.run.fleet import resolve, run_fleet
from bridge.run.gate import PandaGate, gated_session
from bridge.state.checkpoint import StateStore
from bridge.state.deadletter import DeadLetter, DeadLetterFile
from bridge.state.lock import InstanceLock
from bridge.verify.rebuild import rebuild
from bridge.verify.repair import repair
from bridge.verify.schedule import PeriodicVerify
from bridge.verify.verify import Verifier

__all__ = ["main"]

logger = logging.getLogger("bridge")

_COMMANDS = ("run", "once", "checkpoint", "deadletter", "status", "check", "config", "verify", "repair")
_SHORTCUTS = [
    # (option, section.key, help)
    ("--source-url", "source.url", "CouchDB server root (or SSE stream URL)"),
    ("--database", "source.database", "CouchDB database to follow"),
    ("--panda-url", "panda.url", "PANDA root URL"),
    ("--panda-email", "panda.email", "PANDA user email"),
    ("--dataset", "panda.dataset", "PANDA dataset slug"),
    ("--columns", "mapping.columns", "PANDA columns, comma-separated, in order"),
    ("--checkpoint", "checkpoint.path", "state file holding the checkpoint"),
]


_ENVIRONMENT = """environment:
  COUCHDB_PASSWORD   CouchDB password (with [source] username)
  PANDA_API_KEY      PANDA API key (with [panda] email)
  BRIDGE_CONFIG      the configuration file, when --config is not given
  BRIDGE_LOG_LEVEL   the log level, when --log-level is not given
  BRIDGE_LOG_FORMAT  the log format, when --log-format is not given (else [log] format)

Every configuration key, with its default, is listed in the README ("Configuration")."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=os.environ.get("BRIDGE_CONFIG"),
                        help="TOML configuration file (env BRIDGE_CONFIG)")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any configuration key; the value is read as TOML, else as text "
                             "(repeatable, e.g. --set batch.max_changes=500)")
    for option, key, text in _SHORTCUTS:
        common.add_argument(option, dest=key, metavar="VALUE", help=f"{text} (same as --set {key}=...)")
    common.add_argument("--pipeline", dest="pipelines", action="append", default=[], metavar="NAME",
                        help="act on this pipeline of the file only (repeatable; default: every pipeline)")
    common.add_argument("--shard", default=os.environ.get("BRIDGE_SHARD", "0/1"), metavar="K/N",
                        help="only the pipelines whose name hashes to K of N (env BRIDGE_SHARD; README, "
                             "\"Past one machine\")")
    common.add_argument("--log-level", default=os.environ.get("BRIDGE_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (env BRIDGE_LOG_LEVEL)")
    common.add_argument("--log-format", default=os.environ.get("BRIDGE_LOG_FORMAT") or None, choices=["text", "json"],
                        help="log lines as text or one JSON object each (env BRIDGE_LOG_FORMAT; else [log] format)")

    parser = argparse.ArgumentParser(
        prog="bridge",
        description="Mirror a CouchDB database's changes feed into a PANDA dataset, at least once. "
                    "Secrets come from COUCHDB_PASSWORD and PANDA_API_KEY.",
        epilog="With no command, `bridge` runs `bridge run`.",
    )
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    shared: dict[str, Any] = {"parents": [common], "epilog": _ENVIRONMENT,
                              "formatter_class": argparse.RawDescriptionHelpFormatter}
    since_help = ("where to start: `last` (the checkpoint; the default, from 0 when there is none), "
                  "`now` (only new changes), `0` (the beginning) or a seq")
    run = commands.add_parser("run", **shared, help="catch up, then follow until SIGINT/SIGTERM")
    once = commands.add_parser("once", **shared, help="catch up to the current end of the feed, then exit")
    for mirror in (run, once):
        mirror.add_argument("--since", default="last", help=since_help)
        mirror.add_argument("--http", dest="http.listen", metavar="HOST:PORT",
                            help="serve /metrics, /healthz and /readyz there (same as --set http.listen=...)")
        mirror.add_argument("--no-progress", action="store_true",
                            help="no progress bar on the terminal (the periodic progress log line stays)")
        mirror.add_argument("--fail-fast", action="store_true",
                            help="with several pipelines: stop them all on the first one's fatal error")
        mirror.add_argument("--dry-run", action="store_true",
                            help="read, map and plan, print what would be sent, and write nothing anywhere")
    status = commands.add_parser("status", **shared, help="the checkpoint, how far behind, and whether it runs")
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    commands.add_parser("check", **shared, help="make every start-up check, print each, write nothing")
    config = commands.add_parser("config", **shared, help="show the effective configuration, secrets masked")
    config.add_argument("action", choices=["show"])
    checkpoint = commands.add_parser("checkpoint", **shared, help="show or reset the saved checkpoint")
    checkpoint.add_argument("action", choices=["show", "reset", "rebuild"],
                            help="rebuild: a lost state file's record, from PANDA's rows (the seq starts at 0)")
    deadletter = commands.add_parser("deadletter", **shared, help="list or retry dead-lettered changes")
    deadletter.add_argument("action", choices=["list", "retry"])
    _add_verify_commands(commands, shared)
    return parser


def _add_verify_commands(commands: Any, shared: dict[str, Any]) -> None:
    verify = commands.add_parser("verify", **shared, help="compare the source, the PANDA dataset and the record; "
                                 "exit 0 in sync, 1 when a difference was found")
    verify.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    verify.add_argument("--examples", type=int, default=10, metavar="N", help="examples per kind (default 10)")
    repair = commands.add_parser("repair", **shared, help="make the dataset equal to the source for the "
                                 "differences verify finds (refused while a bridge runs on the state file)")
    repair.add_argument("--delete-unowned", action="store_true", help="also delete rows the bridge never wrote")
    repair.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    repair.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    repair.add_argument("--examples", type=int, default=10, metavar="N", help="examples per list (default 10)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bridge` console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in _COMMANDS and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "run")
    args = _parser().parse_args(args_list)
    configure_logging(args.log_level, args.log_format or "text")
    if args.command not in ("run", "once"):
        stopping.release()  # a stop of these is not a clean end: Ctrl-C is KeyboardInterrupt (exit 130)
    try:
        # Reading the local state (and, for status, the source) sends nothing to PANDA: no API key needed.
        reads_state = args.command == "status" or (
            args.command in ("checkpoint", "deadletter") and args.action in ("show", "list"))
        if args.command == "check":
            chosen = _chosen(args, secrets=True, check=True)
            if isinstance(chosen, int):
                return chosen
        else:
            chosen = _chosen(args, secrets=not reads_state)
        assert not isinstance(chosen, int)
        config, pipelines = chosen
        if len(pipelines) != 1 or config.patterns or (args.command == "status" and pipelines[0].table):
            return many_command(args, config, pipelines)
        settings = pipelines[0].settings
        if args.command == "check":
            return check_command(args, settings)
        _configure_for(settings, args)
        if args.command in ("run", "once"):
            return run_bridge(settings, args.since, follow=args.command == "run", dry_run=args.dry_run,
                              progress=not args.no_progress)
        if args.command == "checkpoint" and args.action == "rebuild":
            return rebuild_command(settings)
        if args.command == "checkpoint":
            return checkpoint_command(settings, args.action)
        if args.command == "verify":
            return verify_command(settings, as_json=args.json, examples=args.examples)
        if args.command == "repair":
            return repair_command(settings, delete_unowned=args.delete_unowned, dry_run=args.dry_run,
                                  as_json=args.json, examples=args.examples)
        if args.command == "status":
            return status_command(settings, as_json=args.json)
        if args.command == "config":
            print(render_settings(settings), end="")
            return 0
        return deadletter_command(settings, args.action)
    except BridgeError as exc:
        logger.error("%s: %s", type(exc).__name__, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _configure_for(settings: Settings, args: argparse.Namespace) -> None:
    """Logging as configured, now that the settings are known: their format, their secrets redacted."""
    source_password = urlsplit(settings.source.url).password or ""
    configure_logging(args.log_level, args.log_format or settings.log.format,
                      secrets=(settings.source.password, settings.panda.api_key, source_password),
                      fields={"pipeline": settings.panda.dataset})


def _chosen(args: argparse.Namespace, *, secrets: bool, check: bool = False
            ) -> tuple[PipelineConfig, list[Pipeline]] | int:
    """The configuration and the pipelines this command acts on (`--pipeline`, `--shard`, patterns expanded).

    For `check`, a configuration error is printed as a failed check and its exit code returned.
    """
    try:
        config = load_pipelines(args.config, _overrides(args), secrets=secrets)
        pipelines = resolve(config, args.pipelines, parse_shard(args.shard))
    except ConfigError as exc:
        if not check:
            raise
        print(f"FAIL  configuration: {exc}", flush=True)
        return exc.exit_code
    return config, pipelines


def many_command(args: argparse.Namespace, config: PipelineConfig, pipelines: list[Pipeline]) -> int:
    """A command over the several pipelines of one file (or over a file with [pipelines] for status)."""
    if args.command in ("run", "once"):
        if args.dry_run:
            raise ConfigError("--dry-run takes one pipeline: name it with --pipeline")
        try:
            since = parse_since(args.since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from None
        log_format = args.log_format or (pipelines[0].settings.log.format if pipelines else "text")
        configure_logging(args.log_level, log_format, secrets=_secrets_of(pipelines))
        listen = getattr(args, "http.listen", None) or (pipelines[0].settings.http.listen if pipelines else "")
        return run_fleet(config, pipelines, since, follow=args.command == "run", fail_fast=args.fail_fast,
                         listen=listen, names=args.pipelines, shard=parse_shard(args.shard))
    if args.command == "status":
        statuses = [gather_status(p.settings) | {"pipeline": p.name} for p in pipelines]
        if args.json:
            print(json.dumps(statuses, ensure_ascii=False))
        else:
            print("\n".join(render_status(status) for status in statuses))
        return 0
    if args.command == "check":
        codes = []
        for pipeline in pipelines:
            print(f"pipeline {pipeline.name}:", flush=True)
            codes.append(report(run_checks(pipeline.settings), sys.stdout))
        return next((code for code in codes if code), 0)
    if args.command == "config":
        for pipeline in pipelines:
            print(f"# pipeline {pipeline.name}\n{render_settings(pipeline.settings)}", end="")
        return 0
    if args.command == "verify":
        codes = []
        for pipeline in pipelines:
            print(f"pipeline {pipeline.name}:", flush=True)
            codes.append(verify_command(pipeline.settings, as_json=args.json, examples=args.examples))
        return max(codes, default=0)
    names = ", ".join(p.name for p in pipelines)
    what = " ".join([args.command, *([args.action] if hasattr(args, "action") else [])])
    raise ConfigError(f"`bridge {what}` acts on one pipeline and this file has several ({names}): "
                      "name it with --pipeline NAME")


def _secrets_of(pipelines: list[Pipeline]) -> tuple[str, ...]:
    found: list[str] = []
    for pipeline in pipelines:
        settings = pipeline.settings
        found += [settings.source.password, settings.panda.api_key, urlsplit(settings.source.url).password or ""]
    return tuple(dict.fromkeys(secret for secret in found if secret))


def _overrides(args: argparse.Namespace) -> dict[tuple[str, str], Any]:
    overrides: dict[tuple[str, str], Any] = {}
    for text in args.overrides:
        section, key, value = parse_override(text)
        overrides[(section, key)] = value
    for dotted in [key for _option, key, _text in _SHORTCUTS] + ["http.listen"]:
        value = getattr(args, dotted, None)
        if value is not None:
            section, key = dotted.split(".")
            overrides[(section, key)] = value
    return overrides



def run_bridge(settings: Settings, since_text: str, *, follow: bool, dry_run: bool = False,
               progress: bool = True) -> int:
    """`bridge run` / `bridge once`: mirror until stopped (or caught up); 0 on a clean stop.

    Holds the state file's lock for the whole run (a dry run writes no state, so takes none).
    """
    try:
        since = parse_since(since_text)
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    stop = threading.Event()
    stopping.install()  # usually already done by __main__, before the imports; a stop exits 0 at once
    with contextlib.ExitStack() as held:
        if not dry_run:
            held.enter_context(InstanceLock(Path(settings.checkpoint.path), "bridge run" if follow else "bridge once"))
        writes_session = verify_session = None
        if follow and not dry_run and settings.verify.interval > 0:
            # The periodic verify's PANDA requests and the pipeline's take turns at one gate, so that
            # together they keep to panda.max_concurrent_requests (run/gate.py).
            gate = PandaGate(settings.panda.max_concurrent_requests)
            writes_session = held.enter_context(gated_session(gate, "bridge", settings))
            verify_session = held.enter_context(gated_session(gate, "verify", settings))
        periodic = (PeriodicVerify(settings, stop, panda_session=verify_session)
                    if follow and not dry_run else None)
        numbers = periodic.latest if periodic is not None and periodic.interval > 0 else None
        events = held.enter_context(observed(settings, listen=settings.http.listen, bar=progress, verify=numbers))
        bridge = Bridge(settings, stop, events=events, dry_run=dry_run, panda_session=writes_session)
        if periodic is not None:
            periodic.start()
        try:
            stats: RunStats = bridge.run(since, follow=follow, on_start=lambda: stopping.graceful(stop))
        finally:
            stop.set()
            if periodic is not None:
                periodic.close()
            bridge.close()
    if isinstance(bridge.sink, DryRunSink):
        dead = bridge.deadletters.would_append if isinstance(bridge.deadletters, DryDeadLetters) else 0
        print(bridge.sink.summary(dead), flush=True)
        logger.info("dry run stopped at seq %s; nothing was written", stats.position)
        return 0
    logger.info("stopped; checkpoint at seq %s (%s)", stats.position, settings.checkpoint.path)
    return 0


def status_command(settings: Settings, *, as_json: bool) -> int:
    """`bridge status [--json]`: reads only; 0 whenever the state could be read (none yet included)."""
    status = gather_status(settings)
    print(json.dumps(status, ensure_ascii=False) if as_json else render_status(status))
    return 0


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    """`bridge check`: each start-up check and its result; the exit code `run` would stop with."""
    _configure_for(settings, args)
    print(f"ok    configuration: {args.config or 'defaults, options and environment'}", flush=True)
    return report(run_checks(settings), sys.stdout)


def checkpoint_command(settings: Settings, action: str) -> int:
    """`bridge checkpoint show|reset`."""
    path = Path(settings.checkpoint.path)
    if not path.exists():
        print(json.dumps({"path": str(path), "checkpoint": None}, indent=2))
        return 0
    store = StateStore(path)
    try:
        saved = store.load()
        if action == "reset":
            with InstanceLock(path, "bridge checkpoint reset"):
                store.reset()
            logger.info("checkpoint %s reset: the next run starts from the beginning and re-sends every row", path)
            return 0
        if saved is None:
            print(json.dumps({"path": str(path), "checkpoint": None}, indent=2))
            return 0
        saved_at = (datetime.datetime.fromtimestamp(saved.saved_at, datetime.UTC).isoformat(timespec="seconds")
                    if saved.saved_at else None)
        print(json.dumps({
            "path": str(path),
            "seq": None if saved.seq is None else saved.seq.value,
            "saved_at": saved_at,
            "documents_in_panda": saved.documents,
            "belongs_to": saved.fingerprint,
            "matches_configuration": saved.fingerprint == json.loads(json.dumps(settings.fingerprint())),
            "dead_letters": sum(1 for _ in DeadLetterFile(settings.checkpoint.deadletter_path).entries()),
        }, indent=2, ensure_ascii=False))
        return 0
    finally:
        store.close()


def deadletter_command(settings: Settings, action: str) -> int:
    """`bridge deadletter list|retry`."""
    letters = DeadLetterFile(settings.checkpoint.deadletter_path)
    entries = list(letters.entries())
    if action == "list":
        for entry in entries:
            print(json.dumps({"time": entry.time, "doc_id": entry.doc_id, "seq": entry.seq,
                              "external_id": entry.external_id, "reason": entry.reason, "status": entry.status},
                             ensure_ascii=False))
        logger.info("%d dead-lettered change(s) in %s", len(entries), letters.path)
        return 0
    return retry_dead_letters(settings, letters, entries)


def retry_dead_letters(settings: Settings, letters: DeadLetterFile, entries: list[DeadLetter]) -> int:
    """Deliver each dead-lettered document again, as it is now in the source; keep those still refused."""
    stop = threading.Event()
    with InstanceLock(Path(settings.checkpoint.path), "bridge deadletter retry"):
        bridge = Bridge(settings, stop)
        try:
            kept = bridge.retry_dead_letters(letters, entries)
        finally:
            bridge.close()
    return 0 if not kept else 1


def verify_command(settings: Settings, *, as_json: bool, examples: int) -> int:
    """`bridge verify`: 0 in sync, 1 when a difference was found."""
    verifier = Verifier(settings, threading.Event(), examples=examples)
    try:
        report = verifier.run()
    finally:
        verifier.close()
    print(json.dumps(report.as_json(), ensure_ascii=False) if as_json else report.as_text())  # one line: for jq
    return 0 if report.in_sync else 1


def repair_command(settings: Settings, *, delete_unowned: bool, dry_run: bool, as_json: bool, examples: int) -> int:
    """`bridge repair`: verify, then repair; 0 when nothing is left different, else 1."""
    with InstanceLock(Path(settings.checkpoint.path), "bridge repair"):
        verifier = Verifier(settings, threading.Event(), examples=examples)
        try:
            report = verifier.run()
            outcome = repair(verifier, delete_unowned=delete_unowned, dry_run=dry_run)
        finally:
            verifier.close()
    if as_json:
        print(json.dumps({"verify": report.as_json(), "repair": outcome.as_json(examples)}, ensure_ascii=False))
    else:
        print(report.as_text())
        verb = "would be" if dry_run else "were"
        print(f"repair: {len(outcome.upserted)} row(s) {verb} upserted, {len(outcome.deleted)} {verb} deleted; "
              f"{len(outcome.unowned_kept)} row(s) the bridge never wrote kept"
              + (" (delete them with --delete-unowned)" if outcome.unowned_kept else "")
              + (f"; {len(outcome.refused)} refused by PANDA" if outcome.refused else ""))
        for eid in outcome.unowned_kept[:examples]:
            print(f"  kept: {eid}")
    return 0 if report.in_sync or outcome.complete else 1


def rebuild_command(settings: Settings) -> int:
    """`bridge checkpoint rebuild`: a new record from PANDA's rows; the next run starts from seq 0."""
    with InstanceLock(Path(settings.checkpoint.path), "bridge checkpoint rebuild"):
        verifier = Verifier(settings, threading.Event())
        try:
            outcome = rebuild(verifier)
        finally:
            verifier.close()
    print(json.dumps({"path": settings.checkpoint.path, **outcome.as_json(10)}, indent=2, ensure_ascii=False))
    return 0
