"""The README's performance tables, rendered from benchmark result files (one column pair per file).

    python benchmarks/summary.py benchmarks/results/latest.json benchmarks/results/couchdb-latest.json

Every figure comes from the files as `./dev bench` wrote them, so the tables are regenerated, never typed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Report = dict[str, Any]


def _summary(report: Report, name: str) -> dict[str, Any]:
    summary: dict[str, Any] = report.get("results", {}).get(name, {}).get("summary", {})
    return summary if summary.get("ok_runs") else {}


def _rate(report: Report, name: str) -> str:
    value = _summary(report, name).get("rows_per_s")
    return f"{value:,}" if value else "-"


def _rss(report: Report, name: str) -> str:
    value = _summary(report, name).get("peak_rss_mb")
    return "%.0f MB" % value if value else "-"


def _wall(report: Report, name: str) -> str:
    value = _summary(report, name).get("wall_s")
    return "%.2f s" % value if value else "-"


def _pair(first: str, second: str) -> str:
    return "%s / %s" % (first, second)


def _memory(report: Report, size: str) -> tuple[str, str]:
    entry = report.get("memory", {}).get(size, {})
    if not entry.get("rows_per_s"):
        return "-", "-"
    return "{:,}".format(entry["rows_per_s"]), "%.0f MB" % entry["peak_rss_mb"]


def _big(report: Report, part: str) -> str:
    for name, figure in report.get("big_documents", {}).items():
        if part in name:
            return ("%.0f MB" % figure["peak_rss_mb"]) if figure.get("ok") else "failed"
    return "-"


def _latency(figure: dict[str, Any] | None) -> str:
    if not figure:
        return "-"
    shown = "p50 %.0f ms, p99 %.0f ms (%.0f writes/s)" % (figure["p50_ms"], figure["p99_ms"], figure["rate_per_s"])
    source = figure.get("source")
    if source:  # the follow runs after a backfill: the median round, and the source read alone
        shown += "; source alone p50 %.0f ms, p99 %.0f ms" % (source["p50_ms"], source["p99_ms"])
    return shown


Row = tuple[str, Callable[[Report], str]]


def _shape_row(shape: str, about: str) -> Row:
    """The source limit and `bridge once` on one document shape of the shapes phase."""
    return ("shape `%s` (%s): source limit / `bridge once`" % (shape, about),
            lambda r: _pair(_rate(r, "source limit, shape %s" % shape), _rate(r, "bridge once, shape %s" % shape)))

ROWS: list[Row] = [
    ("source limit: read and parse the whole `_changes` feed, nothing else (rows/s, peak RSS)",
     lambda r: _pair(_rate(r, "source limit"), _rss(r, "source limit"))),
    ("sink limit: bulk PUT the same rows into the emulator, nothing else",
     lambda r: _pair(_rate(r, "sink limit"), _rss(r, "sink limit"))),
    ("`bridge once`, end to end", lambda r: _pair(_rate(r, "bridge once"), _rss(r, "bridge once"))),
    ("`bridge once` at 1,000,000 documents", lambda r: _pair(*_memory(r, "1000000"))),
    ("the bridge's reader alone / couchdb-python / ibmcloudant `ChangesFollower`, reading the same feed",
     lambda r: "%s / %s / %s" % (_rate(r, "bridge reader alone"), _rate(r, "peer"), _rate(r, "peer ibmcloudant"))),
    ("`bridge once` / sink limit, PANDA taking 20 ms per write",
     lambda r: _pair(_rate(r, "bridge once, 20 ms/write"), _rate(r, "sink limit, 20 ms/write"))),
    ("`--deletes` deletes: raw DELETEs / `bridge once` (rows/s), PANDA instant",
     lambda r: _pair(_rate(r, "deletes: raw DELETEs"), _rate(r, "deletes: bridge once"))),
    ("the same, PANDA taking 20 ms per write",
     lambda r: _pair(_rate(r, "deletes: raw DELETEs, 20 ms/write"), _rate(r, "deletes: bridge once, 20 ms/write"))),
    _shape_row("unmapped", "about 400 bytes"),
    _shape_row("nested", "about 4 KB"),
    _shape_row("uuid", "`current` with CouchDB-style random ids"),
    ("PANDA taking 500 ms per write: fixed 1,000-row batches / growing batches (wall)",
     lambda r: _pair(_wall(r, "slow PANDA (500 ms/write): fixed 1,000-row batches"),
                     _wall(r, "slow PANDA (500 ms/write): adaptive batches"))),
    ("peak RSS: `--big-docs` documents of 512 KB / one 7 MB document among `--big-small` small ones",
     lambda r: _pair(_big(r, "docs of 512 KB"), _big(r, "one 7 MB doc"))),
    ("follow, PANDA instant, 100 writes/s", lambda r: _latency(r.get("follow_latency"))),
    ("follow right after a backfill, PANDA 20 ms per write, 100 writes/s",
     lambda r: _latency(r.get("follow_after_backfill", {}).get("100"))),
    ("the same at 1,000 writes/s", lambda r: _latency(r.get("follow_after_backfill", {}).get("1000"))),
]


def _verdict(verdict: dict[str, Any] | None) -> str:
    if not verdict:
        return "-"
    figures = {k: v for k, v in verdict.items() if k not in ("met", "target")}
    shown = ", ".join("%s %s" % (k, v) for k, v in figures.items() if not isinstance(v, (list, dict)))
    nested = [v for v in figures.values() if isinstance(v, dict)]
    if nested:
        shown = ", ".join(filter(None, [shown, "; ".join(", ".join("%s %s" % kv for kv in n.items()) for n in nested)]))
    outcome = "shown" if verdict["met"] is None else "met" if verdict["met"] else "**missed**"
    return "%s: %s" % (outcome, shown)


def render(reports: list[Report]) -> str:
    heads = [report.get("source", "?") for report in reports]
    lines = ["| what | %s |" % " | ".join(heads), "| --- |%s" % (" ---: |" * len(reports))]
    lines += ["| %s | %s |" % (label, " | ".join(cell(report) for report in reports)) for label, cell in ROWS]
    lines += ["", "| target | %s |" % " | ".join(heads), "| --- |%s" % (" --- |" * len(reports))]
    targets: list[str] = []
    for report in reports:
        targets += [name for name in report.get("targets", {}) if name not in targets]
    for name in targets:
        lines.append("| %s (%s) | %s |" % (
            name, next((r["targets"][name]["target"] for r in reports if name in r.get("targets", {})), ""),
            " | ".join(_verdict(report.get("targets", {}).get(name)) for report in reports)))
    lines += ["", "Runs: " + "; ".join("`%s`, %s, %s, load average %s at start and %s at end, %d s" % (
        report.get("command"), report["machine"]["date"], report["machine"]["cpu"],
        report["machine"]["load_average_1m_at_start"], report["machine"]["load_average_1m_at_end"],
        report.get("total_s", 0)) for report in reports)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(render([json.loads(Path(path).read_text()) for path in argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
