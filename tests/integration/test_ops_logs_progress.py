"""Issue 12: JSON log lines, the effective configuration, and the backfill progress bar on a terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import termios
import threading
import tomllib

from bridge.emulator import DEFAULT_API_KEY
from tests.support.pipeline import make_docs

FIELDS = {"ts", "level", "logger", "message", "pipeline"}


def json_lines(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines()]  # every line must parse
    for line in lines:
        assert FIELDS <= set(line), line
        assert line["pipeline"] == "contributors"
    return lines


def test_log_format_json_lines_all_parse_and_carry_the_fields(pipeline, couch_db, panda):
    couch_db.server.bulk_docs(couch_db.name, make_docs(30))
    panda.create_dataset("contributors", pipeline.columns)
    panda.fail_writes(503, count=2)
    result = pipeline.once("--log-format", "json")
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stderr)
    retries = [line for line in lines if line["message"].startswith("retrying PANDA PUT data")]
    assert len(retries) == 2
    for line in retries:
        assert line["level"] == "WARNING" and line["logger"] == "bridge.retry"
        assert line["what"] == "PANDA PUT data" and line["error"] == "SinkUnavailable"
        assert isinstance(line["delay"], float) and line["attempt"] in (1, 2)
    committed = [line for line in lines if line["message"].startswith("batch committed")]
    saved = json.loads(pipeline.cli("checkpoint", "show").stdout)["seq"]
    assert committed and committed[-1]["seq"] == str(saved)
    assert DEFAULT_API_KEY not in result.stderr

    # The same from the configuration file; text stays the default.
    pipeline.extra["log"] = {"format": "json"}
    pipeline.write_config()
    couch_db.server.bulk_docs(couch_db.name, make_docs(2, start=100))
    result = pipeline.once()
    assert result.returncode == 0, result.stderr
    assert any(line["message"].startswith("batch committed") for line in json_lines(result.stderr))
    result = pipeline.once("--log-format", "text")
    assert result.returncode == 0 and result.stderr and not result.stderr.startswith("{")


def test_config_show_prints_the_effective_configuration_with_secrets_masked(pipeline):
    pipeline.extra["source"] = {"url": "http://reader:url-secret@127.0.0.1:5984", "username": "reader"}
    pipeline.environment["COUCHDB_PASSWORD"] = "env-secret"
    result = pipeline.cli("config", "show", "--set", "batch.max_changes=77", "--set", "http.listen=127.0.0.1:9464")
    assert result.returncode == 0, result.stderr
    shown = tomllib.loads(result.stdout)
    assert shown["batch"]["max_changes"] == 77 and shown["http"]["listen"] == "127.0.0.1:9464"
    assert shown["retry"]["initial_delay"] == 0.05 and shown["log"]["format"] == "text"  # file, then defaults
    assert shown["source"]["password"] == "***" and shown["panda"]["api_key"] == "***"
    assert shown["source"]["url"] == "http://reader:***@127.0.0.1:5984"
    for secret in ("url-secret", "env-secret", DEFAULT_API_KEY):
        assert secret not in result.stdout + result.stderr


def run_with_stderr_on(pipeline, stderr_target, *args: str) -> tuple[int, str]:
    """Run `bridge once` with stderr on a pseudo-terminal (None) or on a file; returns (code, stderr text)."""
    pipeline.write_config()
    if stderr_target is not None:
        code = subprocess.run(pipeline.command("once", *args), env=pipeline.env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=stderr_target, timeout=120).returncode
        stderr_target.seek(0)
        return code, stderr_target.read().decode()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows, 120 columns
    process = subprocess.Popen(pipeline.command("once", *args), env=pipeline.env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = process.wait(timeout=120)
    reader.join(timeout=10)
    os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_the_progress_bar_is_drawn_on_a_terminal_only(pipeline, couch_db, panda, tmp_path):
    server, db = couch_db.server, couch_db.name
    pipeline.extra["batch"] = {"max_changes": 250}
    server.bulk_docs(db, make_docs(1000))
    panda.set_latency(0.3)  # four writes of 0.3 s: the backfill lasts long enough to be drawn

    code, terminal = run_with_stderr_on(pipeline, None)
    assert code == 0, terminal
    assert "backfill:" in terminal and "%|" in terminal and "/1.00k" in terminal  # tqdm's bar and its total
    assert "backfill done: 1000 changes committed" in terminal

    for number, args in enumerate([(), ("--no-progress",)]):
        server.bulk_docs(db, make_docs(1000, start=10_000 * (number + 1)))
        if args:
            code, text = run_with_stderr_on(pipeline, None, *args)  # a terminal, but the bar turned off
        else:
            with (tmp_path / "stderr.txt").open("w+b") as handle:
                code, text = run_with_stderr_on(pipeline, handle)
        assert code == 0, text
        assert "%|" not in text and "it/s" not in text and "changes/s]" not in text
        if not args:
            assert "\r" not in text  # a file: no redrawn line at all (a terminal turns \n into \r\n itself)
        assert "backfill done: 1000 changes committed" in text
