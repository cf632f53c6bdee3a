"""A check every bridge run of a test can go through: no log line holds a configured secret.

A secret counts as leaked in any form a log line could carry it: as written, JSON-escaped, URL-encoded
(percent-encoding), or base64 inside a Basic authorization header. Failures name the line and the secret's
role, never the secret itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["SecretScan"]


@dataclass(frozen=True)
class SecretScan:
    """The secrets of one pipeline under test, by role (e.g. {"PANDA API key": "..."})."""

    secrets: Mapping[str, str]
    user: str = ""
    """The CouchDB user, so that user:password in base64 (a Basic header) is looked for too."""

    def forms(self) -> Iterable[tuple[str, str]]:
        for role, secret in self.secrets.items():
            yield role, secret
            yield role + " (JSON-escaped)", json.dumps(secret)[1:-1]
            yield role + " (URL-encoded)", quote(secret, safe="")
            if self.user:
                yield role + " (Basic credentials)", base64.b64encode(f"{self.user}:{secret}".encode()).decode()

    def check(self, text: str, where: str) -> int:
        """Fail naming the first line of `text` that holds a secret; returns how many lines were scanned."""
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            for role, form in self.forms():
                if form and form in line:
                    shown = line.replace(form, "<" + role + ">")
                    raise AssertionError(f"{where}: log line {number} holds the {role}:\n{shown[:500]}")
        return len(lines)
