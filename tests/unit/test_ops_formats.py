"""Pure parts of the operating surface: progress lines, log formats and redaction, config show, listen."""

from __future__ import annotations

import json
import logging
import tomllib

import pytest

from bridge.config.loader import load_settings
from bridge.errors import ConfigError
from bridge.model import Seq
from bridge.ops.config_show import render_settings
from bridge.ops.http import parse_listen
from bridge.ops.logformat import JsonFormatter, redact
from bridge.ops.progress import format_eta, progress_line
from bridge.source.couchdb import writes_since
from tests.support.secrets import SecretScan


@pytest.mark.parametrize("done,total,rate,line", [
    (0, 5000, 0.0, "backfill: 0 of 5000 changes committed (0.0%), 0/s, ETA unknown"),
    (1000, 5000, 100.0, "backfill: 1000 of 5000 changes committed (20.0%), 100/s, ETA 40s"),
    (1000, 400_000, 100.0, "backfill: 1000 of 400000 changes committed (0.2%), 100/s, ETA 1h06m"),
    (5000, 4000, 50.0, "backfill: 5000 of 4000 changes committed (100.0%), 50/s, ETA 0s"),
    (10, None, 2.0, "backfill: 10 changes committed, 2/s, total unknown"),
])
def test_progress_line(done, total, rate, line):
    assert progress_line(done, total, rate) == line


@pytest.mark.parametrize("seconds,text", [(None, "unknown"), (0.4, "0s"), (59, "59s"), (61, "1m01s"),
                                          (3600, "1h00m"), (7322, "2h02m")])
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


def test_redact_replaces_every_form_of_a_secret():
    secret = 'p@ss "w/rd"'
    text = f'plain {secret} json {json.dumps(secret)[1:-1]} url p%40ss%20%22w%2Frd%22 end'
    assert redact(text, [secret, ""]) == "plain *** json *** url *** end"


def test_json_formatter_carries_the_structured_fields():
    record = logging.LogRecord("bridge.retry", logging.WARNING, __file__, 1, "retrying %s in %.2fs", ("x", 0.5),
                               None)
    for key, value in {"what": "x", "error": "SinkUnavailable", "delay": 0.5, "attempt": 2, "pipeline": "p"}.items():
        setattr(record, key, value)
    line = json.loads(JsonFormatter().format(record))
    assert line.pop("ts").endswith("+00:00")
    assert line == {"level": "WARNING", "logger": "bridge.retry", "message": "retrying x in 0.50s", "what": "x",
                    "error": "SinkUnavailable", "delay": 0.5, "attempt": 2, "pipeline": "p"}


def test_render_settings_masks_secrets_and_reads_back_as_the_same_settings(tmp_path):
    config = tmp_path / "bridge.toml"
    config.write_text('[source]\nurl = "http://u:pw-in-url@127.0.0.1:5984"\ndatabase = "db"\nusername = "u"\n'
                      '[panda]\nemail = "a@b.c"\ndataset = "d"\n[mapping]\ncolumns = ["a"]\n')
    settings = load_settings(config, {("batch", "max_changes"): 5},
                             env={"PANDA_API_KEY": "key-secret", "COUCHDB_PASSWORD": "env-secret"})
    text = render_settings(settings)
    for secret in ("pw-in-url", "key-secret", "env-secret"):
        assert secret not in text
    shown = tomllib.loads(text)
    assert shown["source"]["url"] == "http://u:***@127.0.0.1:5984"
    assert shown["source"]["password"] == shown["panda"]["api_key"] == "***"
    assert shown["batch"]["max_changes"] == 5 and shown["checkpoint"]["path"] == "state/bridge.checkpoint"
    assert set(shown) == {"source", "panda", "mapping", "checkpoint", "batch", "retry", "verify", "http", "log"}


@pytest.mark.parametrize("text,address", [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)),
                                          ("localhost:80", ("localhost", 80))])
def test_parse_listen(text, address):
    assert parse_listen(text) == address


@pytest.mark.parametrize("text", ["9464", ":9464", "host:", "host:99999", "host:port"])
def test_parse_listen_refuses(text):
    with pytest.raises(ConfigError):
        parse_listen(text)


@pytest.mark.parametrize("update_seq,since,expected", [
    (1050, Seq(1000), 50), (1000, None, 1000), (10, Seq(20), 0),
    ("75-g1AAAA", Seq("20-g1AAAA"), None), (100, Seq("20-g1AAAA"), None), (None, None, None),
])
def test_writes_since(update_seq, since, expected):
    assert writes_since({"update_seq": update_seq}, since) == expected


@pytest.mark.parametrize("leak", ['pw: s3cr"t/x', 'pw: s3cr\\"t/x', "url: s3cr%22t%2Fx",
                                  "auth: Basic dTpzM2NyInQveA=="])
def test_the_secret_scan_finds_every_form_of_a_leak(leak):
    scan = SecretScan({"CouchDB password": 's3cr"t/x'}, user="u")
    assert scan.check("a clean line\nanother", "run") == 2
    with pytest.raises(AssertionError, match="log line 2 holds the CouchDB password") as failure:
        scan.check("a clean line\n" + leak, "run")
    assert 's3cr"t/x' not in str(failure.value)  # the failure names the secret's role, not the secret
