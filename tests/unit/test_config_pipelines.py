"""config/pipelines.py and config/shard.py: tables over defaults, names, state files, patterns, shards."""

import textwrap
from pathlib import Path

import pytest

from bridge.config.pipelines import database_slug, load_pipelines, select
from bridge.config.shard import parse_shard, shard_of
from bridge.errors import ConfigError

ENV = {"PANDA_API_KEY": "key"}
DEFAULTS = textwrap.dedent("""
    [source]
    url = "http://127.0.0.1:5984"
    [panda]
    url = "http://127.0.0.1:8000"
    email = "panda@pandaproject.net"
    [mapping]
    columns = ["a", "b"]
""")


def load(tmp_path: Path, text: str, **kwargs):
    path = tmp_path / "bridge.toml"
    path.write_text(DEFAULTS + textwrap.dedent(text))
    return load_pipelines(path, env=ENV, **kwargs)


def test_a_file_without_pipelines_is_one_pipeline_named_after_its_dataset(tmp_path):
    path = tmp_path / "single.toml"
    path.write_text(DEFAULTS.replace('[panda]', '[panda]\ndataset = "contributors"')
                    .replace('[source]', '[source]\ndatabase = "db"'))
    config = load_pipelines(path, env=ENV)
    assert [p.name for p in config.pipelines] == ["contributors"]
    assert config.pipelines[0].settings.checkpoint.path == "state/bridge.checkpoint"  # unchanged default
    assert config.patterns == ()


def test_tables_take_the_defaults_and_win_over_them(tmp_path):
    config = load(tmp_path, """
        [pipelines.people]
        source = {database = "people"}
        panda = {dataset = "people"}
        [pipelines.places]
        source = {database = "places"}
        panda = {dataset = "places", timeout = 3.0}
        mapping = {columns = ["x"]}
    """)
    people, places = config.pipelines
    assert (people.name, places.name) == ("people", "places")
    assert people.settings.source.url == places.settings.source.url == "http://127.0.0.1:5984"
    assert people.settings.mapping.columns == ["a", "b"] and places.settings.mapping.columns == ["x"]
    assert people.settings.panda.timeout == 30.0 and places.settings.panda.timeout == 3.0
    assert people.settings.checkpoint.path == "state/people.checkpoint"
    assert places.settings.checkpoint.path == "state/places.checkpoint"
    assert people.settings.panda.api_key == "key"


@pytest.mark.parametrize("name", ["a b", "a.b", "é", "a/b"])
def test_names_are_letters_digits_dash_underscore(tmp_path, name):
    with pytest.raises(ConfigError, match="pipeline name"):
        load(tmp_path, f'[pipelines."{name}"]\nsource = {{database = "d"}}\npanda = {{dataset = "d"}}\n')


def test_two_pipelines_sharing_a_state_file_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="share the state file"):
        load(tmp_path, """
            [checkpoint]
            path = "state/shared.checkpoint"
            [pipelines.one]
            source = {database = "one"}
            panda = {dataset = "one"}
            [pipelines.two]
            source = {database = "two"}
            panda = {dataset = "two"}
        """)


def test_an_error_names_the_table(tmp_path):
    with pytest.raises(ConfigError, match=r"pipelines\.two.*dataset is required"):
        load(tmp_path, '[pipelines.two]\nsource = {database = "two"}\n')


def test_pattern_keys_outside_a_table_or_without_databases_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="need source.databases"):
        load(tmp_path, '[pipelines.x]\nsource = {database = "d"}\npanda = {dataset_template = "{database}"}\n')
    path = tmp_path / "top.toml"
    path.write_text(DEFAULTS.replace("[source]", '[source]\ndatabases = ["e-*"]'))
    with pytest.raises(ConfigError, match="for a \\[pipelines"):
        load_pipelines(path, env=ENV)


def test_a_pattern_expands_to_one_pipeline_per_matching_database(tmp_path):
    config = load(tmp_path, """
        [pipelines.elections]
        source = {databases = ["elections-*", "vote_?"]}
        panda = {dataset_template = "e_{database}", create_dataset = true}
        checkpoint = {path_template = "st/{database}.cp"}
    """)
    assert config.pipelines == ()
    found = config.expand({"elections": ["elections-2020", "other", "_users", "vote_1", "elections-2024"]})
    assert [p.name for p in found] == ["elections-2020", "elections-2024", "vote_1"]
    assert [p.settings.panda.dataset for p in found] == ["e_elections-2020", "e_elections-2024", "e_vote_1"]
    assert [p.settings.checkpoint.path for p in found] == ["st/elections-2020.cp", "st/elections-2024.cp",
                                                          "st/vote_1.cp"]
    assert {p.settings.source.database for p in found} == {"elections-2020", "elections-2024", "vote_1"}
    assert all(p.table == "elections" for p in found)


def test_pattern_defaults_and_refusals(tmp_path):
    config = load(tmp_path, '[pipelines.e]\nsource = {databases = ["e*"]}\n')
    (only,) = config.expand({"e": ["e1"]})
    assert only.settings.panda.dataset == "e1" and only.settings.checkpoint.path == "state/e1.checkpoint"
    with pytest.raises(ConfigError, match="derives per database"):
        load(tmp_path, '[pipelines.e]\nsource = {databases = ["e*"]}\ncheckpoint = {path = "x"}\n')
    with pytest.raises(ConfigError, match="must be text holding"):
        load(tmp_path, '[pipelines.e]\nsource = {databases = ["e*"]}\npanda = {dataset_template = "fixed"}\n')


@pytest.mark.parametrize(("database", "slug"), [
    ("elections-2020", "elections-2020"),
    ("user_db", "user_db"),
    ("a$b", "a-b-" + __import__("hashlib").sha256(b"a$b").hexdigest()[:8]),
    ("a(b)", "a-b-" + __import__("hashlib").sha256(b"a(b)").hexdigest()[:8]),
    ("org/team", "org-team-" + __import__("hashlib").sha256(b"org/team").hexdigest()[:8]),
    ("schema", "schema-" + __import__("hashlib").sha256(b"schema").hexdigest()[:8]),
])
def test_database_slugs_are_deterministic_and_distinct(database, slug):
    assert database_slug(database) == slug


def test_select_by_name(tmp_path):
    config = load(tmp_path, """
        [pipelines.one]
        source = {database = "one"}
        panda = {dataset = "one"}
        [pipelines.two]
        source = {database = "two"}
        panda = {dataset = "two"}
    """)
    assert [p.name for p in select(config.pipelines, [])] == ["one", "two"]
    assert [p.name for p in select(config.pipelines, ["two"])] == ["two"]
    with pytest.raises(ConfigError, match="no such pipeline"):
        select(config.pipelines, ["three"])


NAMES = [f"pipeline-{n}" for n in range(40)] + ["elections-2020", "people", "é"]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_shards_cover_each_pipeline_exactly_once(count):
    owners = {name: [k for k in range(count) if parse_shard(f"{k}/{count}").owns(name)] for name in NAMES}
    assert all(len(shards) == 1 for shards in owners.values())
    if count > 1:
        assert len({shards[0] for shards in owners.values()}) > 1  # really spread, not all on one


def test_the_shard_hash_is_the_documented_one():
    # sha256("people") = 2cd64d...; first 8 bytes big-endian modulo N (independent arithmetic below)
    digest = bytes.fromhex(__import__("hashlib").sha256(b"people").hexdigest())
    assert shard_of("people", 7) == sum(b << (8 * (7 - i)) for i, b in enumerate(digest[:8])) % 7


@pytest.mark.parametrize("text", ["1/1", "3/2", "-1/2", "a/b", "2", "0/0"])
def test_bad_shards_are_refused(text):
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


def test_the_kubernetes_example_configuration_loads(tmp_path):
    manifest = (Path(__file__).resolve().parents[2] / "examples" / "kubernetes" / "statefulset.yaml").read_text()
    block = manifest.split("bridge.toml: |\n", 1)[1].split("\n---", 1)[0]
    path = tmp_path / "bridge.toml"
    path.write_text(textwrap.dedent(block))
    config = load_pipelines(path, env=ENV)
    assert [p.name for p in config.pipelines] == ["contributors"]
    assert [p.name for p in config.expand({"elections": ["elections-2024", "people"]})] == [
        "contributors", "elections-2024"]
    assert "--shard" in manifest and "volumeClaimTemplates" in manifest
