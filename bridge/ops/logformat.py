"""Log lines on stderr: readable text (the default) or one JSON object per line, never with a secret.

JSON lines carry `ts`, `level`, `logger`, `message` and the record's structured fields (`pipeline`, `seq`,
`what`, `error`, `delay`, `attempt`, whatever `extra=` gave). Both formats pass through `redact`, which
replaces every configured secret (as written, JSON-escaped or URL-encoded) with `***`: the adapters
already keep credentials out of messages, and this makes a slip in a foreign library's text harmless too.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from bridge.ops.logcontext import PipelineField

__all__ = ["JsonFormatter", "configure_logging", "redact"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret, in any of the forms it may take in a log line, replaced by `***`."""
    for secret in secrets:
        for form in {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}:
            if form and form in text:
                text = text.replace(form, "***")
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601), level, logger, message, structured fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _Redacting(logging.Formatter):
    def __init__(self, inner: logging.Formatter, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self._inner = inner
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._inner.format(record), self._secrets)


class _Fields(logging.Filter):
    """Adds fields every line of this process carries (the pipeline's name)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__()
        self._fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self._fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def configure_logging(level: str, fmt: str = "text", *, secrets: Iterable[str] = (),
                      fields: dict[str, Any] | None = None) -> None:
    """(Re)configure the root logger: one stderr handler in `fmt` (`text` or `json`), redacting `secrets`."""
    handler = logging.StreamHandler(sys.stderr)
    inner = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(_Redacting(inner, tuple(secret for secret in secrets if secret)))
    if fields:
        handler.addFilter(_Fields(fields))
    handler.addFilter(PipelineField())  # lines logged for one of several pipelines (ops/logcontext.py)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
