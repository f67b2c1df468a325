"""Push webhooks from GitHub, GitLab, Gitea and anything else: a push to the watched branch
makes every site fetch at once. Routes for site/endpoints.py; cli wires them to each
agent's `trigger()` (`run --webhook-port`).

* `/hooks/github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`; a push is
  `X-GitHub-Event: push` (JSON or form-encoded `payload=`).
* `/hooks/gitlab`: `X-Gitlab-Token: <the secret>`; a push is `X-Gitlab-Event: Push Hook`
  with `object_kind: push`.
* `/hooks/gitea` (Forgejo too): `X-Gitea-Signature: <hex HMAC-SHA256 of the body>` (or
  `X-Forgejo-Signature`); a push is `X-Gitea-Event: push`.
* `/hooks/generic`: `X-Signature-256: sha256=<hex HMAC-SHA256 of the body>`; any body is
  a push, unless it is a JSON object whose `ref` is not the branch's.

Every comparison is constant-time (`hmac.compare_digest`). A bad or missing signature is
401 and triggers nothing; a body over the limit is 413, refused before it is read. A push
to the watched branch (`ref: refs/heads/<branch>`) is 200 and triggers; every other event
(a ping, a tag, another branch) is 202 and ignored. The secret and the signatures are
never logged. A trigger only wakes the watchers: what is fetched, and whether anything is
accepted, is decided as on a poll, so a forged or replayed push can do no more than make
the sites fetch early.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.site import endpoints

log = logging.getLogger("reconciler.site.webhook")

MAX_BODY = 1024 * 1024  # bytes: GitHub caps its payloads at 25 MB, but a push fits in far less
FORGES = ("github", "gitlab", "gitea", "generic")


@dataclasses.dataclass(frozen=True)
class Options:
    secret: bytes
    branch: str
    max_body: int = MAX_BODY


def routes(*, options: Options, on_push: Callable[[], None],
           count: Callable[[str, str], None] = lambda _forge, _result: None,
           ) -> dict[str, endpoints.Route]:
    """The webhook routes. `on_push` runs for a push to the branch; `count(forge, result)`
    for every request (result: triggered, ignored, unauthorized, bad_request)."""
    if not options.secret:
        raise ValueError("a webhook secret is required")
    checks: Mapping[str, Callable[[endpoints.Request], str | None]] = {
        "github": lambda r: _check_hmac(r, options.secret, "X-Hub-Signature-256", "sha256="),
        "gitlab": lambda r: _check_token(r, options.secret, "X-Gitlab-Token"),
        "gitea": lambda r: _check_hmac(r, options.secret, "X-Gitea-Signature", "",
                                       also="X-Forgejo-Signature"),
        "generic": lambda r: _check_hmac(r, options.secret, "X-Signature-256", "sha256="),
    }
    found: dict[str, endpoints.Route] = {}
    for forge in FORGES:
        def handle(request: endpoints.Request, forge: str = forge) -> endpoints.Response:
            response, result = _receive(request, forge=forge, check=checks[forge],
                                        branch=options.branch, on_push=on_push)
            count(forge, result)
            return response
        found[f"/hooks/{forge}"] = endpoints.Route(handler=handle, methods=frozenset({"POST"}),
                                                   max_body=options.max_body)
    return found


def signature(secret: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of `body` that the forges send (GitHub prefixes `sha256=`)."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _receive(request: endpoints.Request, *, forge: str,
             check: Callable[[endpoints.Request], str | None], branch: str,
             on_push: Callable[[], None]) -> tuple[endpoints.Response, str]:
    problem = check(request)
    if problem is not None:
        log.warning("webhook %s from %s refused: %s", forge, request.client, problem)
        return endpoints.Response.text(401, problem), "unauthorized"
    try:
        payload = _payload(request)
    except ValueError as exc:
        return endpoints.Response.text(400, f"the body is not a JSON object: {exc}"), \
            "bad_request"
    ignored = _ignored(request, forge=forge, payload=payload, branch=branch)
    if ignored is not None:
        log.debug("webhook %s ignored: %s", forge, ignored)
        return _json(202, {"result": "ignored", "reason": ignored}), "ignored"
    log.info("webhook %s: a push to %s: fetching now", forge, branch)
    on_push()
    return _json(200, {"result": "triggered", "branch": branch}), "triggered"


def _check_hmac(request: endpoints.Request, secret: bytes, header: str, prefix: str, *,
                also: str | None = None) -> str | None:
    """None when the header holds the body's HMAC; else what is wrong (never the values)."""
    sent = request.headers.get(header) or (request.headers.get(also) if also else None)
    if not sent:
        return f"missing {header}"
    expected = prefix + signature(secret, request.body)
    if not hmac.compare_digest(sent.strip().lower().encode(), expected.encode()):
        return f"bad {header}"
    return None


def _check_token(request: endpoints.Request, secret: bytes, header: str) -> str | None:
    sent = request.headers.get(header)
    if not sent:
        return f"missing {header}"
    if not hmac.compare_digest(sent.encode(), secret):
        return f"bad {header}"
    return None


def _payload(request: endpoints.Request) -> dict[str, Any]:
    """The JSON body; GitHub's form encoding (`payload=<json>`) too. Empty: {}."""
    body = request.body
    if not body.strip():
        return {}
    content_type = request.headers.get("Content-Type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        body = (fields.get("payload") or [""])[0].encode()
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc).splitlines()[0][:100]) from None
    if not isinstance(decoded, dict):
        raise ValueError(f"a JSON {type(decoded).__name__}")
    return decoded


def _ignored(request: endpoints.Request, *, forge: str, payload: Mapping[str, Any],
             branch: str) -> str | None:
    """Why this event does not call for a fetch, or None for a push to the branch."""
    wanted = f"refs/heads/{branch}"
    event = {"github": request.headers.get("X-GitHub-Event"),
             "gitlab": request.headers.get("X-Gitlab-Event"),
             "gitea": request.headers.get("X-Gitea-Event")
             or request.headers.get("X-Forgejo-Event"),
             "generic": "push"}[forge]
    if forge == "gitlab" and payload.get("object_kind") != "push":
        return f"not a push (object_kind {payload.get('object_kind')!r})"
    if event is None or event.lower() not in ("push", "push hook"):
        return f"not a push event ({event or 'no event header'})"
    ref = payload.get("ref")
    if forge == "generic" and ref is None:
        return None  # a plain "something changed"
    if ref != wanted:
        return f"a push to {ref!r}, not {wanted!r}"
    return None


def _json(status: int, body: Mapping[str, Any]) -> endpoints.Response:
    return endpoints.Response(status, (json.dumps(body) + "\n").encode(), "application/json")
