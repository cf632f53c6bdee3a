"""What each PANDA HTTP status means for the bridge: one function, `classify` (contract 16.7).

Every answer the sink gets passes through here, so the meaning of a status is written once.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from bridge.errors import (
    AuthError,
    DatasetLocked,
    NotFoundError,
    ProtocolError,
    RejectedError,
    SinkUnavailable,
)

__all__ = ["classify", "snippet"]

_TRANSIENT = (429, 502, 503, 504)
_UNKNOWN_OUTCOME = (502, 504)  # contract 14: the write may have completed; retrying is safe (idempotent)


def snippet(response: requests.Response, limit: int = 300) -> str:
    """The start of a response body as text, for messages."""
    text = response.content.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def classify(response: requests.Response, *, data_endpoint: bool) -> None:
    """Return for a 2xx answer, else raise the BridgeError its status means (contract 16.7).

    400 -> RejectedError (the batch's fault; its message is PANDA's body), 401 -> AuthError,
    403 -> DatasetLocked on a data endpoint (AuthError elsewhere), 404 -> NotFoundError,
    429/502/503/504 and other 5xx -> SinkUnavailable, 500 -> SinkUnavailable with status 500 (the caller
    caps its retries), 3xx and any other 4xx or 501 -> ProtocolError.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    where = "%s %s" % (response.request.method, urlsplit(response.url).path)
    if status == 400:
        raise RejectedError(response.content.decode("utf-8", "replace"), status=400)
    if status == 414:  # contract 14: nginx's request-line limit; only an external_id in the URL grows it
        raise RejectedError("PANDA (nginx) refused %s: request line too long (414)" % where[:200], status=414)
    if status == 401:
        raise AuthError(
            "PANDA refused the credentials (401) for %s: unknown or inactive user" % where, status=401
        )
    if status == 403:
        if data_endpoint:  # contract 10: no throttling is configured, so 403 on data means locked
            raise DatasetLocked(
                "PANDA dataset locked (403) on %s: %s" % (where, snippet(response)), status=403
            )
        raise AuthError("PANDA refused %s (403): %s" % (where, snippet(response)), status=403)
    if status == 404:
        raise NotFoundError("PANDA answered 404 for %s: the dataset does not exist" % where, status=404)
    if status in _TRANSIENT or (status >= 500 and status not in (500, 501, 505)):
        note = " (outcome unknown; retrying is safe)" if status in _UNKNOWN_OUTCOME else ""
        raise SinkUnavailable("PANDA answered %d for %s%s" % (status, where, note), status=status)
    if status == 500:
        raise SinkUnavailable("PANDA answered 500 for %s: %s" % (where, snippet(response)), status=500)
    if status == 300:  # contract 5: a POST reused the slug
        raise ProtocolError("PANDA answered 300 for %s: several datasets share this slug" % where, status=300)
    if 300 <= status < 400:  # contract 1: only a missing trailing slash redirects; our URLs all end in /
        location = response.headers.get("Location", "")
        raise ProtocolError("PANDA redirected %s (%d) to %s" % (where, status, location), status=status)
    raise ProtocolError("PANDA answered %d for %s: %s" % (status, where, snippet(response)), status=status)
