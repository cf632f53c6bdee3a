"""The bridge as the benchmark runs it: a config file with a fresh checkpoint, and the command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from people import COLUMNS

__all__ = ["write_config", "command", "env", "DATASET"]

DATASET = "people"


def write_config(directory: Path, couch_url: str, database: str, panda_url: str,
                 extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """A config for one run, with its own (empty) checkpoint directory; every other setting is the default
    unless `extra` sets it (section -> key -> value)."""
    directory.mkdir(parents=True, exist_ok=True)
    sections: dict[str, dict[str, Any]] = {
        "source": {"url": couch_url, "database": database},
        "panda": {"url": panda_url, "email": "panda@pandaproject.net", "dataset": DATASET,
                  "create_dataset": True},
        "mapping": {"columns": COLUMNS},
        "checkpoint": {"path": str(directory / "state" / "bridge.state.checkpoint")},
    }
    for name, values in (extra or {}).items():
        sections.setdefault(name, {}).update(values)
    lines = []
    for name, values in sections.items():
        lines.append("[%s]" % name)
        lines += ["%s = %s" % (key, json.dumps(value)) for key, value in values.items()]
    config = directory / "bridge.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def command(config: Path, mode: str = "once") -> list[str]:
    return [sys.executable, "-m", "bridge", mode, "--config", str(config)]


def env() -> dict[str, str]:
    return dict(os.environ, PANDA_API_KEY="panda-demo-key")
