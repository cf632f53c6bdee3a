"""Issue 16, defect 2: PANDA's Solr key `<slug>-<external_id>` is shared by every dataset (contract 7).

Row `2024-x` of `contributors` and row `x` of `contributors-2024` are one Solr document; the bridge
refuses to start where that can happen, unless `[mapping] external_id_prefix` rules it out.
"""

from __future__ import annotations

import threading

import requests

from bridge.config.settings import PandaSettings, RetrySettings
from bridge.emulator import DEFAULT_API_KEY, DEFAULT_EMAIL, PandaEmulator
from bridge.sink.panda import PandaSink
from tests.support.couchdb_server import CouchDatabase
from tests.support.pipeline import Pipeline

COLUMNS = ["first_name", "last_name", "employer"]
THEIRS = {"x": ["theirs", None, None]}


def other_datasets(panda: PandaEmulator, clashing: str) -> None:
    """More datasets than one page of the dataset list (20 by default), the clashing one last."""
    for n in range(30):
        panda.create_dataset(f"unrelated-{n:02d}", ["a"])
    panda.create_dataset(clashing, COLUMNS)


def write_theirs(panda: PandaEmulator, slug: str) -> None:
    """Row `x` of the other dataset, written through PANDA's API as its own writer would."""
    response = requests.put(f"{panda.url}/api/1.0/dataset/{slug}/data/", timeout=5,
                            json={"objects": [{"external_id": "x", "data": ["theirs", None, None]}]},
                            headers={"PANDA-EMAIL": DEFAULT_EMAIL, "PANDA-API-KEY": DEFAULT_API_KEY})
    assert response.status_code == 202


def test_a_longer_slug_that_shares_keys_stops_the_bridge_before_anything_is_written(
        pipeline: Pipeline, couch_db: CouchDatabase, panda: PandaEmulator) -> None:
    other_datasets(panda, "contributors-2024")
    write_theirs(panda, "contributors-2024")
    couch_db.server.bulk_docs(couch_db.name, [{"_id": "2024-x", "first_name": "ours"}])
    result = pipeline.once()
    assert result.returncode == 2, result.stderr
    assert "'contributors-2024'" in result.stderr and "'contributors'" in result.stderr
    assert "external_id_prefix" in result.stderr
    assert panda.rows("contributors-2024") == THEIRS
    assert "contributors" not in [r.path.split("/")[4] for r in panda.requests if r.method == "PUT"]


def test_an_id_prefix_makes_the_keys_collision_free(pipeline: Pipeline, couch_db: CouchDatabase,
                                                    panda: PandaEmulator) -> None:
    other_datasets(panda, "contributors-2024")
    write_theirs(panda, "contributors-2024")
    couch_db.server.bulk_docs(couch_db.name, [{"_id": "2024-x", "first_name": "ours"}])
    pipeline.extra = {"mapping": {"external_id_prefix": "r_"}}
    pipeline.write_config()
    result = pipeline.once()
    assert result.returncode == 0, result.stderr
    assert pipeline.rows() == {"r_2024-x": ["ours", None, None]}
    assert panda.rows("contributors-2024") == THEIRS


def test_a_slug_that_extends_another_cannot_be_made_safe(pipeline: Pipeline, couch_db: CouchDatabase,
                                                        panda: PandaEmulator) -> None:
    other_datasets(panda, "contributors-2024")
    pipeline.dataset = "contributors-2024-b"  # its row <id> is row b-<id> of contributors-2024
    pipeline.extra = {"mapping": {"external_id_prefix": "r_"}}
    pipeline.write_config()
    couch_db.server.bulk_docs(couch_db.name, [{"_id": "x", "first_name": "ours"}])
    result = pipeline.once()
    assert result.returncode == 2, result.stderr
    assert "'contributors-2024'" in result.stderr and "no setting of this bridge can prevent it" in result.stderr
    assert "contributors-2024-b" not in panda.app.store.datasets


def test_the_dataset_list_is_read_page_by_page(panda: PandaEmulator) -> None:
    slugs = [f"d{n:03d}" for n in range(230)]
    for slug in slugs:
        panda.create_dataset(slug, ["a"])
    headers = {"PANDA-EMAIL": DEFAULT_EMAIL, "PANDA-API-KEY": DEFAULT_API_KEY}
    first = requests.get(f"{panda.url}/api/1.0/dataset/", headers=headers, timeout=5).json()
    assert len(first["objects"]) == 20 and first["meta"]["total_count"] == 230  # Tastypie's default page
    settings = PandaSettings(url=panda.url, email=DEFAULT_EMAIL, api_key="k", dataset="d000")
    sink = PandaSink(settings, retry=RetrySettings(0.01, 0.05), stop=threading.Event())
    try:
        assert sink.dataset_slugs() == slugs
    finally:
        sink.close()
    assert len([r for r in panda.requests if r.path == "/api/1.0/dataset/"]) == 1 + 3
