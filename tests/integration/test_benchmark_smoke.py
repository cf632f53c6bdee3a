"""The benchmark script keeps working: a tiny run of every phase writes its table and JSON (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.real_couchdb import COUCHDB_SCRIPT, couchdb_unavailable_reason

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_runs_every_phase_on_a_tiny_database(server_kind, tmp_path):
    if server_kind == "couchdb" and couchdb_unavailable_reason() is None and not COUCHDB_SCRIPT.exists():
        pytest.skip("`./dev bench --source couchdb` starts a CouchDB of its own from ../shared/couchdb; "
                    "there is none here (BRIDGE_TEST_COUCHDB_URL is used by the tests only)")
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--source", server_kind, "--docs", "600",
         "--repeat", "2", "--deletes", "20",
         "--delete-repeat", "1",
         "--latency-seconds", "1", "--memory-sizes", "300,600", "--big-docs", "4", "--big-small", "50",
         "--adaptive-docs", "300", "--adaptive-repeat", "1", "--follow-rates", "100,1000", "--follow-backlog", "50",
         "--follow-repeat", "2",
         "--shape", "current,unmapped,nested,uuid", "--no-settle", "--output", str(output)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert {"source limit", "sink limit", "bridge once", "peer", "peer ibmcloudant"} <= set(report["results"])
    # ibmcloudant's one-off ChangesFollower ends by itself on CouchDB (`pending: 0`); PouchDB Server sends no
    # `pending`, so there it is stopped by its `limit` option at the feed's row count
    ibm = report["results"]["peer ibmcloudant"]
    assert ibm.get("limit") == (600 if server_kind == "pouchdb" else None)
    assert all(run["output"]["rows"] == 600 for run in ibm["runs"] if run["exit_code"] == 0)
    assert set(report["targets"]) >= {"backfill", "memory", "follow_latency", "faster_than_peer", "adaptive_batches",
                                      "big_documents", "follow_after_backfill_100_per_s",
                                      "follow_after_backfill_1000_per_s", "backfill_shape_current",
                                      "backfill_shape_unmapped", "backfill_shape_nested", "backfill_shape_uuid",
                                      "cpu_per_change"}
    assert {"slow PANDA (500 ms/write): fixed 1,000-row batches", "slow PANDA (500 ms/write): adaptive batches",
            "memory: 4 docs of 512 KB", "memory: one 7 MB doc among 50 small", "bridge once, shape unmapped",
            "bridge once, shape nested", "bridge once, shape uuid"} <= set(report["results"])
    for name, variant in report["results"].items():
        assert variant["summary"]["ok_runs"] >= 1, name  # every run's outcome was checked and held
    assert "| bridge once |" in result.stdout
    assert report["source"].startswith("PouchDB Server" if server_kind == "pouchdb" else "Apache CouchDB")
    assert report["settings"]["settled"] is False  # a results file says its timings were taken unsettled
    for rate, follow in report["follow_after_backfill"].items():  # two rounds, each also read by the source alone
        assert len(follow["p99_rounds_ms"]) == len(follow["source"]["p99_rounds_ms"]) == 2, rate
        assert follow["p99_ms"] in follow["p99_rounds_ms"] and follow["seen"] == follow["writes"], rate
        assert follow["source"]["seen"] == follow["source"]["writes"] == follow["writes"], rate
    backfill = report["targets"]["backfill"]
    assert len(backfill["ratio_per_round"]) == 2 and backfill["ratio"] > 0  # one ratio per round, paired
    summary = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "summary.py"), str(output)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert summary.returncode == 0, summary.stderr
    table = summary.stdout
    assert "| `bridge once`, end to end | " in table and "| cpu_per_change (" in table
    for line in table.split("\n\n")[0].splitlines()[2:]:  # every figure filled (no 1,000,000-doc run here)
        label, *cells = [cell.strip() for cell in line.strip("|").split("|")]
        parts = [part.strip() for cell in cells for part in cell.split("/")]
        assert "-" not in parts or "1,000,000" in label, line


def test_verify_benchmark_runs_on_a_tiny_database(tmp_path):
    output = tmp_path / "verify.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "verify.py"), "--sizes", "400,800", "--output", str(output)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert [entry["rows"] for entry in report["sizes"]] == [400, 800]
    for entry in report["sizes"]:  # the script itself checks the counts each verify reports
        assert entry["verify_in_sync"]["output"]["in_sync"] is True
        assert entry["verify_with_differences"]["output"]["in_sync"] is False
    assert "| 800 |" in result.stdout
