"""Reading a running bridge's HTTP endpoint: /metrics parsed by prometheus_client, /readyz and /healthz."""

from __future__ import annotations

from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Samples", "scrape", "probe"]

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]
"""Sample name -> {its labels: value}."""


def scrape(base: str) -> Samples:
    """GET /metrics and parse it with prometheus_client's own parser."""
    response = requests.get(base + "/metrics", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    matching = [v for got, v in samples.get(name, {}).items() if set(labels.items()) <= set(got)]
    assert len(matching) == 1, f"{name}{labels}: {samples.get(name)}"
    return matching[0]


def probe(base: str, path: str) -> tuple[int, Any] | None:
    """(status, JSON body) of GET path; None while nothing listens yet."""
    try:
        response = requests.get(base + path, timeout=5)
    except requests.ConnectionError:
        return None
    return response.status_code, response.json()
