"""requests sessions to one server that read the environment's HTTP settings once, not on every request.

With `trust_env` on (requests' default) every request looks up the proxies (`HTTP_PROXY`, `NO_PROXY`, ...),
the CA bundle (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`) and `~/.netrc` again: 0.45 ms of CPU a request on
the benchmark machine, a fifth of requests' whole cost per request, paid for every page read and every
write. Each session the bridge makes talks to one server, so the answers never change within a run:
`pin_environment` asks once, for that server's URL, keeps them on the session and turns `trust_env` off.
What the caller already set on the session (proxies, `verify`, `auth`) wins, as it does in requests.
"""

from __future__ import annotations

import os

import requests
from requests.utils import get_environ_proxies, get_netrc_auth

__all__ = ["pin_environment"]


def pin_environment(session: requests.Session, url: str) -> requests.Session:
    """Give `session` the environment's settings for `url` (proxies, CA bundle, netrc credentials) and stop it
    looking them up again per request; returns the session."""
    for scheme, proxy in get_environ_proxies(url, no_proxy=session.proxies.get("no_proxy")).items():
        session.proxies.setdefault(scheme, proxy)
    if session.verify is True:
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    if session.auth is None:
        session.auth = get_netrc_auth(url)
    session.trust_env = False
    return session
