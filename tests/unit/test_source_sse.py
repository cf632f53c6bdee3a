"""How SseSource classifies the answer to a stream request (pure: no server involved)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bridge.config.settings import RetrySettings
from bridge.errors import AuthError, BridgeError, ConfigError, NotFoundError, ProtocolError, SourceUnavailable
from bridge.source.sse import SseSource, check_response

SSE = "text/event-stream"

CLASSIFIED: list[tuple[int, str | None, type[BridgeError] | None]] = [
    (200, SSE, None),
    (200, "text/event-stream; charset=utf-8", None),
    (200, "Text/Event-Stream", None),
    (200, "application/json", ProtocolError),
    (200, None, ProtocolError),
    (204, None, ProtocolError),
    (206, SSE, ProtocolError),
    (400, "application/json", ProtocolError),
    (401, "application/json", AuthError),
    (403, "application/json", AuthError),
    (404, "application/json", NotFoundError),
    (410, None, NotFoundError),
    (405, None, ProtocolError),
    (408, None, SourceUnavailable),
    (412, "application/json", SourceUnavailable),
    (429, None, SourceUnavailable),
    (500, None, SourceUnavailable),
    (502, "text/html", SourceUnavailable),
    (503, "application/json", SourceUnavailable),
]


@pytest.mark.parametrize("status, content_type, error", CLASSIFIED)
def test_check_response(status: int, content_type: str | None, error: type[BridgeError] | None) -> None:
    if error is None:
        check_response(status, content_type)
        return
    with pytest.raises(error) as caught:
        check_response(status, content_type, '{"error":"x","reason":"why"}')
    assert type(caught.value) is error
    assert caught.value.status == status
    if status >= 400:
        assert "why" in str(caught.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"read_timeout": 0},
        {"connect_timeout": -1},
        {"min_reconnect": 0},
        {"min_reconnect": 2, "max_reconnect": 1},
    ],
)
def test_settings_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SseSource("http://127.0.0.1:1/x", retry=RetrySettings(), stop=threading.Event(), **kwargs)


@pytest.mark.parametrize(
    "retry_ms, expected",
    [(None, 0.5), (0, 0.1), (250, 0.25), (10**9, 60.0)],
    ids=["default", "low", "in", "high"],
)
def test_reconnect_delay_is_clamped(retry_ms: int | None, expected: float) -> None:
    source = SseSource("http://127.0.0.1:1/x", retry=RetrySettings(initial_delay=0.5), stop=threading.Event())
    source._server_retry = retry_ms
    assert source.reconnect_delay == expected


def test_logs_name_the_stream_without_credentials_or_query() -> None:
    source = SseSource(
        "http://user:secret@127.0.0.1:5984/db/_changes?token=t", retry=RetrySettings(), stop=threading.Event()
    )
    assert source._where == "http://127.0.0.1:5984/db/_changes"
