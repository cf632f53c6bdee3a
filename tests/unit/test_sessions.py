"""pin_environment: a session gets the environment's proxies, CA bundle and netrc credentials for its server
once, keeps what the caller set, and no longer looks anything up per request (the bridge's sessions use it)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from bridge.config.settings import PandaSettings, RetrySettings, SourceSettings
from bridge.sessions import pin_environment
from bridge.sink.panda import PandaSink
from bridge.source.couch_http import CouchHttp
from bridge.source.databases import DatabaseList

URL = "http://couch.example:5984"


def _clear(monkeypatch, tmp_path) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def test_the_environment_is_read_once_into_the_session(monkeypatch, tmp_path):
    _clear(monkeypatch, tmp_path)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/bundle.pem")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine couch.example login reader password s3cret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    session = pin_environment(requests.Session(), URL)
    assert session.trust_env is False
    assert session.proxies["http"] == "http://proxy.example:3128"
    assert session.verify == "/etc/bundle.pem"
    assert session.auth == ("reader", "s3cret")


def test_no_proxy_and_the_callers_settings_win(monkeypatch, tmp_path):
    _clear(monkeypatch, tmp_path)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "couch.example")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/bundle.pem")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine couch.example login reader password s3cret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    session = requests.Session()
    session.verify = False
    session.auth = ("admin", "given")
    pin_environment(session, URL)
    assert "http" not in session.proxies  # the server is in NO_PROXY
    assert session.verify is False and session.auth == ("admin", "given")


@contextmanager
def _server() -> Iterator[str]:
    class Answer(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield "http://127.0.0.1:%d" % server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_a_pinned_session_looks_nothing_up_per_request(monkeypatch, tmp_path):
    _clear(monkeypatch, tmp_path)
    with _server() as url:
        session = pin_environment(requests.Session(), url)
        # Set after pinning: a session that still read the environment would send this request to a proxy
        # that does not exist, and fail.
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        assert session.get(url + "/db", timeout=5).json() == {}
        plain = requests.Session()
        try:
            plain.get(url + "/db", timeout=5)
        except requests.RequestException:
            pass
        else:
            raise AssertionError("the unpinned session should have used HTTP_PROXY")


def test_the_bridges_own_sessions_are_pinned(tmp_path):
    couch = CouchHttp(SourceSettings(url=URL, database="db"))
    panda = PandaSink(PandaSettings(url="http://panda.example:8000", email="e", api_key="k", dataset="d"),
                      retry=RetrySettings(), stop=threading.Event())
    databases = DatabaseList(SourceSettings(url=URL, database="db"))
    assert couch.session.trust_env is False
    assert panda._session.trust_env is False
    assert databases._session.trust_env is False
