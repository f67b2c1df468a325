"""Push webhooks over real HTTP on loopback: each forge's signature, pushes to the branch
trigger, everything else is ignored, and nothing unauthenticated or oversized gets in."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import logging
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.site import endpoints, webhook

SECRET = b"s3cr3t-webhook-value"
BRANCH = "main"


class Hooks:
    """A webhook server on a free port, counting the triggers and the results."""

    def __init__(self) -> None:
        self.triggers = 0
        self.counted: list[tuple[str, str]] = []
        self.server = endpoints.Server(
            routes=webhook.routes(options=webhook.Options(secret=SECRET, branch=BRANCH,
                                                          max_body=4096),
                                  on_push=self.trigger,
                                  count=lambda f, r: self.counted.append((f, r))),
            port=0, host="127.0.0.1").start()

    def trigger(self) -> None:
        self.triggers += 1

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    running = Hooks()
    yield running
    running.server.stop()


def push(ref: str = f"refs/heads/{BRANCH}") -> bytes:
    return json.dumps({"ref": ref, "after": "0" * 40, "object_kind": "push"}).encode()


def github(body: bytes, *, event: str = "push", secret: bytes = SECRET) -> dict[str, str]:
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-Hub-Signature-256": f"sha256={digest}",
            "Content-Type": "application/json"}


def test_a_signed_github_push_to_the_branch_triggers_a_fetch(hooks: Hooks) -> None:
    """A GitHub push to refs/heads/<branch> with a good X-Hub-Signature-256 is 200 and
    triggers once."""
    body = push()
    status, text = hooks.post("/hooks/github", body, github(body))
    assert (status, json.loads(text)) == (200, {"result": "triggered", "branch": BRANCH})
    assert hooks.triggers == 1
    assert hooks.counted == [("github", "triggered")]


def test_a_form_encoded_github_push_is_read_too(hooks: Hooks) -> None:
    """GitHub's application/x-www-form-urlencoded delivery (payload=<json>) is a push too."""
    body = urllib.parse.urlencode({"payload": push().decode()}).encode()
    headers = {**github(body), "Content-Type": "application/x-www-form-urlencoded"}
    assert hooks.post("/hooks/github", body, headers)[0] == 200
    assert hooks.triggers == 1


@pytest.mark.parametrize("headers", [
    {"X-GitHub-Event": "push"},
    {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
    {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha1=deadbeef"},
], ids=["missing", "wrong", "another-algorithm"])
def test_a_bad_or_missing_signature_is_401_and_triggers_nothing(
        hooks: Hooks, headers: dict[str, str]) -> None:
    """Without the body's HMAC under the shared secret: 401, no trigger."""
    status, _ = hooks.post("/hooks/github", push(), headers)
    assert status == 401
    assert hooks.triggers == 0
    assert hooks.counted == [("github", "unauthorized")]


def test_a_signature_made_with_another_secret_is_401(hooks: Hooks) -> None:
    """A body signed with another secret is refused like an unsigned one."""
    body = push()
    assert hooks.post("/hooks/github", body, github(body, secret=b"guess"))[0] == 401
    assert hooks.triggers == 0


def test_a_body_changed_after_signing_is_401(hooks: Hooks) -> None:
    """The signature covers the body: a tampered body does not verify."""
    headers = github(push())
    assert hooks.post("/hooks/github", push("refs/heads/other"), headers)[0] == 401
    assert hooks.triggers == 0


@pytest.mark.parametrize(("event", "ref"), [
    ("ping", "refs/heads/main"), ("push", "refs/heads/feature"), ("push", "refs/tags/v1"),
    ("pull_request", "refs/heads/main")])
def test_other_github_events_are_202_and_ignored(hooks: Hooks, event: str, ref: str) -> None:
    """A ping, a push to another branch or a tag, any other event: 202, no trigger."""
    body = push(ref)
    status, text = hooks.post("/hooks/github", body, github(body, event=event))
    assert status == 202
    assert json.loads(text)["result"] == "ignored"
    assert hooks.triggers == 0


def test_gitlab_compares_its_token_and_wants_a_push_hook(hooks: Hooks) -> None:
    """GitLab: X-Gitlab-Token equal to the secret; a Push Hook to the branch triggers, a tag
    push is ignored, a wrong token is 401."""
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET.decode()}
    assert hooks.post("/hooks/gitlab", push(), headers)[0] == 200
    tag = json.dumps({"object_kind": "tag_push", "ref": "refs/tags/v1"}).encode()
    assert hooks.post("/hooks/gitlab", tag, {**headers, "X-Gitlab-Event": "Tag Push Hook"})[0] \
        == 202
    assert hooks.post("/hooks/gitlab", push(), {**headers, "X-Gitlab-Token": "nope"})[0] == 401
    assert hooks.post("/hooks/gitlab", push(), {"X-Gitlab-Event": "Push Hook"})[0] == 401
    assert hooks.triggers == 1


def test_gitea_signs_the_body_without_a_prefix(hooks: Hooks) -> None:
    """Gitea and Forgejo: X-Gitea-Signature is the bare hex HMAC of the body."""
    body = push()
    digest = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert hooks.post("/hooks/gitea", body, {"X-Gitea-Event": "push",
                                             "X-Gitea-Signature": digest})[0] == 200
    assert hooks.post("/hooks/gitea", body, {"X-Forgejo-Event": "push",
                                             "X-Forgejo-Signature": digest})[0] == 200
    assert hooks.post("/hooks/gitea", body, {"X-Gitea-Event": "push",
                                             "X-Gitea-Signature": "0" * 64})[0] == 401
    assert hooks.triggers == 2


def test_generic_hook_takes_any_signed_body(hooks: Hooks) -> None:
    """/hooks/generic: X-Signature-256: sha256=<hex>; an empty body or the branch's ref
    triggers, another ref is ignored."""
    def signed(body: bytes) -> dict[str, str]:
        return {"X-Signature-256": "sha256=" + webhook.signature(SECRET, body)}

    assert hooks.post("/hooks/generic", b"", signed(b""))[0] == 200
    assert hooks.post("/hooks/generic", push(), signed(push()))[0] == 200
    assert hooks.post("/hooks/generic", push("refs/heads/x"), signed(push("refs/heads/x")))[0] \
        == 202
    assert hooks.post("/hooks/generic", b"", {})[0] == 401
    assert hooks.triggers == 2


def test_a_signed_body_that_is_not_json_is_400(hooks: Hooks) -> None:
    """Authenticated but unreadable: 400, no trigger."""
    body = b"not json"
    assert hooks.post("/hooks/github", body, github(body))[0] == 400
    assert hooks.triggers == 0


def test_a_body_over_the_limit_is_413_before_it_is_read(hooks: Hooks) -> None:
    """A Content-Length over the limit is answered 413 at once: the server does not wait
    for the body (only the headers are sent here)."""
    with socket.create_connection(("127.0.0.1", hooks.server.port), timeout=5) as sock:
        sock.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                     b"Content-Length: 10000000\r\n\r\n")
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.0 413") or answer.startswith("HTTP/1.1 413"), answer
    assert hooks.triggers == 0


def test_a_chunked_body_is_411(hooks: Hooks) -> None:
    """Without a Content-Length the size cannot be checked first: 411."""
    with socket.create_connection(("127.0.0.1", hooks.server.port), timeout=5) as sock:
        sock.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        answer = sock.recv(4096).decode()
    assert " 411 " in answer.splitlines()[0]
    assert hooks.triggers == 0


def test_other_paths_and_methods(hooks: Hooks) -> None:
    """Unknown paths are 404, a GET on a hook 405."""
    conn = http.client.HTTPConnection("127.0.0.1", hooks.server.port, timeout=5)
    conn.request("GET", "/hooks/github")
    assert conn.getresponse().status == 405
    conn.close()
    assert hooks.post("/hooks/bitbucket", b"{}", {})[0] == 404


def test_neither_the_secret_nor_a_signature_is_logged(hooks: Hooks,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Refusals and triggers are logged without the secret or any signature sent."""
    caplog.set_level(logging.DEBUG, logger="reconciler")
    body = push()
    good = github(body)
    hooks.post("/hooks/github", body, good)
    bad = {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "ab" * 32}
    hooks.post("/hooks/github", body, bad)
    hooks.post("/hooks/gitlab", body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "xyz1"})
    text = caplog.text
    assert "bad X-Hub-Signature-256" in text
    for secret in (SECRET.decode(), good["X-Hub-Signature-256"][7:], "ab" * 32, "xyz1"):
        assert secret not in text


def test_a_webhook_needs_a_secret() -> None:
    """No secret, no webhook routes: an unauthenticated trigger is never served."""
    with pytest.raises(ValueError, match="secret"):
        webhook.routes(options=webhook.Options(secret=b"", branch=BRANCH), on_push=lambda: None)


def test_the_secret_from_the_environment_drops_a_trailing_newline_as_from_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Secret's value with a trailing newline is the same secret whether mounted as a file
    or handed over as $RECONCILER_WEBHOOK_SECRET."""
    from reconciler import cli

    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    from_file = cli._webhook_secret(argparse.Namespace(webhook_secret_file=path))
    monkeypatch.setenv("RECONCILER_WEBHOOK_SECRET", SECRET.decode() + "\n")
    from_env = cli._webhook_secret(argparse.Namespace(webhook_secret_file=None))
    assert from_file == from_env == SECRET
