"""config/: TOML + overrides + environment secrets, validated; unknown keys are errors."""

import textwrap
from pathlib import Path

import pytest

from bridge.config.loader import load_settings, parse_override
from bridge.config.settings import scrub_url
from bridge.errors import ConfigError

GOOD = textwrap.dedent("""
    [source]
    url = "http://127.0.0.1:5984"
    database = "contributors"
    [panda]
    url = "http://127.0.0.1:8000"
    email = "panda@pandaproject.net"
    dataset = "contributors"
    create_dataset = true
    [mapping]
    columns = ["first_name", "last_name", "employer"]
    [mapping.fields]
    employer = "job.employer"
    [checkpoint]
    path = "state/contributors.checkpoint"
""")
ENV = {"PANDA_API_KEY": "key-s3cret", "COUCHDB_PASSWORD": "pw-s3cret"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_good_file_with_secrets_from_the_environment(tmp_path):
    settings = load_settings(write(tmp_path, GOOD), env=ENV)
    assert settings.panda.api_key == "key-s3cret" and settings.source.password == "pw-s3cret"
    assert settings.mapping.field_paths() == ("first_name", "last_name", "job.employer")
    assert settings.source.effective_read_timeout == 3 * settings.source.heartbeat
    assert "s3cret" not in repr(settings)


def test_overrides_win(tmp_path):
    overrides = {("panda", "dataset"): "other", ("batch", "max_changes"): 10, ("mapping", "columns"): "a,b,employer"}
    settings = load_settings(write(tmp_path, GOOD), overrides, env=ENV)
    assert settings.panda.dataset == "other"
    assert settings.batch.max_changes == 10
    assert settings.mapping.columns == ["a", "b", "employer"]


def test_fingerprint_has_no_secrets_and_tracks_mapping(tmp_path):
    a = load_settings(write(tmp_path, GOOD), env=ENV)
    b = load_settings(write(tmp_path, GOOD), {("mapping", "columns"): ["x", "employer"]}, env=ENV)
    c = load_settings(write(tmp_path, GOOD), {("source", "url"): "http://u:secret@127.0.0.1:5984"}, env=ENV)
    assert a.fingerprint_hash() != b.fingerprint_hash()
    assert a.fingerprint_hash() == c.fingerprint_hash()  # credentials are not part of identity
    assert "secret" not in str(c.fingerprint())


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (GOOD + "\n[extra]\n", ENV, "unknown section"),
        (GOOD.replace('database = "contributors"', 'database = "contributors"\ndatabse = "x"'), ENV,
         "unknown key.*databse"),
        (GOOD.replace('database = "contributors"', ""), ENV, r"\[source\] database is required"),
        (GOOD, {}, r"api_key is required"),
        (GOOD.replace('columns = ["first_name", "last_name", "employer"]', ""), ENV, "columns is required"),
        (GOOD.replace('dataset = "contributors"', 'dataset = ""'), ENV, "dataset is required"),
        (GOOD.replace('dataset = "contributors"', 'dataset = "a/b"'), ENV, "slug"),
        (GOOD.replace("create_dataset = true", 'create_dataset = "yes"'), ENV, "create_dataset must be bool"),
        (GOOD.replace('url = "http://127.0.0.1:8000"', 'url = "ftp://x"'), ENV, "http"),
        (GOOD.replace('employer = "job.employer"', 'employr = "job.employer"'), ENV, "not in"),
        ("[source\n", ENV, "cannot be read"),
        (GOOD.replace('database = "contributors"', 'database = "contributors"\nfilter = "app/x"\n'
                      'filter_params = { since = "now" }'), ENV, "filter_params cannot set"),
    ],
)
def test_bad_configurations(tmp_path, text, env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text), env=env)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env=ENV)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("batch.max_changes=500", ("batch", "max_changes", 500)),
        ("panda.dataset=contributors", ("panda", "dataset", "contributors")),
        ("panda.create_dataset=true", ("panda", "create_dataset", True)),
        ('mapping.columns=["a","b"]', ("mapping", "columns", ["a", "b"])),
        ("source.url=http://x:1", ("source", "url", "http://x:1")),
    ],
)
def test_parse_override(text, parsed):
    assert parse_override(text) == parsed


def test_scrub_url():
    assert scrub_url("http://admin:pw@host:5984/db") == "http://host:5984/db"
    assert scrub_url("http://host/db") == "http://host/db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # rules that PandaSink checked a second time before: now only PandaSettings does
        (GOOD.replace('url = "http://127.0.0.1:8000"', 'url = "http://u:p@127.0.0.1:8000"'), "credentials"),
        (GOOD.replace('url = "http://127.0.0.1:8000"', 'url = "http://127.0.0.1:8000/?x=1"'), "host"),
        (GOOD.replace('email = "panda@pandaproject.net"', 'email = " panda@pandaproject.net"'), "printable ASCII"),
        (GOOD.replace('dataset = "contributors"', 'dataset = "schema"'), "slug"),
        (GOOD + "group_records = -1\n", "group_records and group_seconds must not be negative"),
        (GOOD + "group_seconds = -0.5\n", "group_records and group_seconds must not be negative"),
        # set by the start-up checks only, never by a configuration
        (GOOD + "\n[retry]\nmax_tries = 2\n", r"unknown key.*max_tries"),
    ],
)
def test_each_rule_is_the_settings_own(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text), env=ENV)
