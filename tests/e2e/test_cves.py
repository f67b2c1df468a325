"""Tests named for the CVEs of peer GitOps tools they guard against, where the product
meets the network: credentials in error output, and the push webhook.

The input-side CVEs (YAML bombs, path traversal, symlinks, huge files) are pinned in
tests/unit/test_cves.py.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import http.client
import json
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.site import endpoints, webhook
from tests import gitrepo, gitservers
from tests.e2e.conftest import ClusterUnderTest

pytestmark = pytest.mark.e2e

PASSWORD = "pa55-CVE-2023-25163-do-not-print"
SITE = "edge-sfo-01"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True,
                          text=True, timeout=120, check=False, env=env)


def everything_said(tmp_path: Path, *runs: subprocess.CompletedProcess[str]) -> str:
    """What a person or a log collector could read: every output, and the state files."""
    said = [run.stdout + run.stderr for run in runs]
    said += [p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*")
             if p.is_file() and p.suffix in (".json", ".bak")]
    return "\n".join(said)


@pytest.mark.parametrize("answer", ["in-the-url", "refused", "wrong-password",
                                    "no-such-repository"])
def test_cve_2023_25163_git_credentials_never_reach_an_error_message(
        tmp_path: Path, remote: gitrepo.GitRemote, answer: str,
        monkeypatch: pytest.MonkeyPatch, local_cluster: ClusterUnderTest) -> None:
    """Argo CD printed a repository's credentials in the error of a failed fetch
    (CVE-2023-25163). A password in the URL is refused with the URL redacted; one in the
    credentials file, on a fetch that fails (nothing listening, the password refused, no
    such repository), gives an error naming the repository, and the password appears in
    no output, state file or `status`."""
    gitrepo.isolate(tmp_path, monkeypatch)
    state_dir = tmp_path / "state"
    credentials = tmp_path / "git-credentials"
    credentials.write_text(f"site:{PASSWORD}\n")
    credentials.chmod(0o600)
    with gitservers.git_http(remote.bare.parent, user="site",
                             password=PASSWORD if answer != "wrong-password" else "other") \
            as base:
        if answer == "refused":
            base = f"http://127.0.0.1:{gitservers.free_port()}"
        path = "no-such.git" if answer == "no-such-repository" else remote.bare.name
        url = f"{base}/{path}"
        if answer == "in-the-url":
            access = ["--repo", url.replace("http://", f"http://site:{PASSWORD}@")]
        else:
            access = ["--repo", url, "--git-credentials-file", str(credentials)]
        synced = cli("sync", *access, "--site", SITE, "--state-dir", str(state_dir),
                     "--kubeconfig", str(local_cluster.kubeconfig), "--git-timeout", "10s")
    status = cli("status", "--site", SITE, "--state-dir", str(state_dir), "-o", "json")
    said = everything_said(tmp_path, synced, status)
    assert synced.returncode != 0, synced
    assert "127.0.0.1" in synced.stderr, "the error names the repository"
    if answer != "in-the-url":
        assert "fetch" in synced.stderr.lower(), synced.stderr
    assert PASSWORD not in said
    assert "pa55" not in said  # not even a prefix of it


class Hooks:
    """The real webhook endpoint on a free port, counting the pushes it let through."""

    SECRET = b"cve-2024-40634-secret"

    def __init__(self) -> None:
        self.triggers = 0
        self.server = endpoints.Server(
            routes=webhook.routes(options=webhook.Options(secret=self.SECRET, branch="main"),
                                  on_push=self.trigger, count=lambda f, r: None),
            port=0, host="127.0.0.1").start()

    def trigger(self) -> None:
        self.triggers += 1


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    running = Hooks()
    yield running
    running.server.stop()


def _flood(port: int, declared: int, sent: int) -> str:
    """One unauthenticated POST that declares `declared` bytes and sends `sent` of them;
    the first line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                     b"Content-Type: application/json\r\n"
                     + f"Content-Length: {declared}\r\n\r\n".encode())
        try:
            chunk = b"[" * 65536
            for _ in range(sent // len(chunk)):
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed: what it should do
        return sock.recv(4096).decode(errors="replace").partition("\r\n")[0]


def test_cve_2024_40634_an_unauthenticated_oversized_webhook_payload_is_refused_unread(
        hooks: Hooks) -> None:
    """Argo CD's webhook read any payload whole, unauthenticated, until it ran out of
    memory (CVE-2024-40634). Forty concurrent unsigned posts that declare and send far
    more than the limit are each answered 413, trigger nothing, and the process's peak
    memory barely moves; a signed push still gets through afterwards."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    over = webhook.MAX_BODY * 64
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: _flood(hooks.server.port, over, 4 * 1024 * 1024),
                                range(40)))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert all(" 413 " in f"{a} " for a in answers), answers
    assert hooks.triggers == 0
    assert grown_mib < 64, f"peak memory grew {grown_mib:.0f} MiB"
    body = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()
    digest = hmac.new(Hooks.SECRET, body, hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", hooks.server.port, timeout=10)
    conn.request("POST", "/hooks/github", body=body, headers={
        "X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json"})
    assert conn.getresponse().status in (200, 202)
    conn.close()
    assert hooks.triggers == 1


def test_cve_2024_40634_an_unsigned_payload_is_never_parsed(hooks: Hooks) -> None:
    """An unsigned body within the limit is refused 401 on its signature, before any
    parsing: a malformed or deeply nested JSON body costs nothing and triggers nothing."""
    body = b"[" * 500_000
    conn = http.client.HTTPConnection("127.0.0.1", hooks.server.port, timeout=10)
    conn.request("POST", "/hooks/github", body=body, headers={
        "X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64,
        "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 401, response.read()
    conn.close()
    assert hooks.triggers == 0
