"""Git as a production client, end to end: `reconciler sync`, `run` and `plan` as an operator
runs them, against real Git servers on loopback (smart HTTP with Basic auth, a real sshd, a
remote that never answers) and the embedded cluster.

The secrets are checked where anyone could see them: every process's command line and
environment while the fetch runs, the logs, the CLI's output, the state file, `status`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler import kube
from reconciler.repo import source
from reconciler.site import pipeline
from tests import gitrepo, gitservers, processes
from tests.e2e.conftest import SITE, ClusterUnderTest, Site

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

SECRET = "s3cr3t-t0ken-e2e"
needs_sshd = pytest.mark.skipif(
    not gitservers.SSHD.exists() or os.geteuid() != 0,
    reason="needs root and openssh-server (/usr/sbin/sshd); .ci/run installs it")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME without ssh or git settings, so only the flags under test decide; returns it."""
    return gitrepo.isolate(tmp_path, monkeypatch)


def secret_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o400)
    return path


# --- https credentials from a file or a mounted Secret -----------------------------------------


def test_sync_over_https_with_a_credentials_file_never_shows_it(
        local_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sync` fetches from a server demanding Basic auth with --git-credentials-file, and the
    token is in no process's command line or environment while it runs, in no log (caplog
    at debug and the CLI's stderr), output, state file, `status` (text and JSON) or `plan`."""
    creds = secret_file(tmp_path / "creds", f"site:{SECRET}\n")
    encoded = base64.b64encode(f"site:{SECRET}".encode()).decode()
    with gitservers.git_http(remote.bare.parent, user="site", password=SECRET,
                             delay=0.2) as base:
        url = f"{base}/remote.git"
        site = Site(root=tmp_path, remote_url=url, target=local_cluster)
        # In process first, with every log record kept.
        caplog.set_level(logging.DEBUG)
        options = pipeline.Options(url=url, site=SITE, cache_dir=tmp_path / "cache",
                                   access=source.Access(credentials_file=creds))
        adapter = kube.connect(kubeconfig=local_cluster.kubeconfig)
        try:
            with site.store.lock():
                in_process = pipeline.sync_once(options=options, store=site.store,
                                                target=adapter)
        finally:
            adapter.close()
        # Then the CLI, on the same state and cache, watched from /proc.
        with processes.scanning(SECRET, encoded) as scan:
            synced = site.sync_cli("--git-credentials-file", str(creds), "-v", "-o", "json")
        planned = site.cli("plan", "--repo", url, "--site", SITE, "--state-dir",
                           str(site.state_dir), "--cache-dir", str(tmp_path / "plan-cache"),
                           "--git-credentials-file", str(creds), "-o", "json")
    assert synced.returncode == 0, synced.stderr
    assert in_process.ok, in_process.message
    assert planned.returncode == 0, planned.stderr
    status_text = site.cli("status", "--state-dir", str(site.state_dir), "--site", SITE,
                           check=True)
    status_json = site.cli("status", "--state-dir", str(site.state_dir), "--site", SITE,
                           "-o", "json", check=True)
    assert json.loads(status_json.stdout)["source"]["url"] == url
    assert scan.leaks == []
    assert any("remote-http" in command for command in scan.git_commands), scan.git_commands
    texts = {"sync stdout": synced.stdout, "sync stderr": synced.stderr,
             "log records": caplog.text, "plan": planned.stdout + planned.stderr,
             "status": status_text.stdout, "status -o json": status_json.stdout,
             "state": site.store.path.read_text()}
    assert [name for name, text in texts.items() if SECRET in text or encoded in text] == []


def test_a_mounted_secret_named_by_the_environment_serves_sync(
        local_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """$RECONCILER_GIT_CREDENTIALS_FILE naming the folder a basic-auth Secret is mounted at
    (`username` and `password` files, as kubelet writes them) works like the flag."""
    secret = tmp_path / "secret"
    secret_file(secret / "username", "site")
    secret_file(secret / "password", SECRET + "\n")
    monkeypatch.setenv("RECONCILER_GIT_CREDENTIALS_FILE", str(secret))
    with gitservers.git_http(remote.bare.parent, user="site", password=SECRET) as base:
        site = Site(root=tmp_path, remote_url=f"{base}/remote.git", target=local_cluster)
        synced = site.sync_cli()
    assert synced.returncode == 0, synced.stderr
    assert SECRET not in synced.stdout + synced.stderr + site.store.path.read_text()


def test_a_url_carrying_a_token_is_refused(local_cluster: ClusterUnderTest,
                                           tmp_path: Path) -> None:
    """A URL with a token in it is a usage error (exit 2) that points at the credentials
    file; no git runs, and nothing records the token."""
    site = Site(root=tmp_path, remote_url=f"https://{SECRET}@git.example.com/fleet.git",
                target=local_cluster)
    refused = site.sync_cli()
    assert refused.returncode == 2
    assert "https://***@git.example.com/fleet.git carries credentials" in refused.stderr
    assert "--git-credentials-file" in refused.stderr
    assert SECRET not in refused.stdout + refused.stderr
    assert not site.store.path.exists() or SECRET not in site.store.path.read_text()


# --- ssh: a key, and only the host keys given ---------------------------------------------------


@needs_sshd
def test_sync_over_ssh_with_key_and_known_hosts_flags(
        local_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--ssh-key-file and --known-hosts-file fetch through a real sshd; they win over an ssh
    command in the environment (here one that would fail)."""
    with gitservers.git_ssh(tmp_path / "ssh") as (base, _command):
        monkeypatch.setenv("GIT_SSH_COMMAND", "false")
        site = Site(root=tmp_path, remote_url=f"{base}{remote.bare}", target=local_cluster)
        synced = site.sync_cli("--ssh-key-file", str(tmp_path / "ssh" / "client_key"),
                               "--known-hosts-file", str(tmp_path / "ssh" / "known_hosts"))
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert site.store.load().last_fetched_head == gitrepo.git("rev-parse", "HEAD",
                                                             cwd=remote.work)


@needs_sshd
@pytest.mark.parametrize("known", ["unknown", "changed"])
def test_an_ssh_host_not_in_known_hosts_is_refused(
        known: str, local_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
        tmp_path: Path, isolated_home: Path) -> None:
    """A host whose key the known_hosts file lacks (or holds another key for) is refused,
    never trusted on first use: the error names the host and the file, and nothing is
    written to any known_hosts file."""
    ssh = tmp_path / "ssh"
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    with gitservers.git_ssh(ssh) as (base, _command):
        port = base.rpartition(":")[2]
        entry = "[127.0.0.1]:1" if known == "unknown" else f"[127.0.0.1]:{port}"
        known_hosts = ssh / "trusted_hosts"
        known_hosts.write_text(f"{entry} {(tmp_path / 'other_key.pub').read_text()}")
        before = known_hosts.read_text()
        site = Site(root=tmp_path, remote_url=f"{base}{remote.bare}", target=local_cluster)
        refused = site.sync_cli("--ssh-key-file", str(ssh / "client_key"),
                                "--known-hosts-file", str(known_hosts))
    assert refused.returncode == 1
    expected = ("its host key is not in the known_hosts file" if known == "unknown"
                else "its host key differs from the one in the known_hosts file")
    assert f"ssh refused host [127.0.0.1]:{port}: {expected} {known_hosts}" in refused.stderr
    assert f"ssh-keyscan -p {port} 127.0.0.1" in refused.stderr
    assert known_hosts.read_text() == before
    assert not (isolated_home / ".ssh" / "known_hosts").exists()
    recorded = site.store.load()
    assert recorded.last_fetched_head is None


# --- timeouts, and no git outlives the reconciler ------------------------------------------------


def test_a_silent_remote_fails_the_pass_at_the_timeout(local_cluster: ClusterUnderTest,
                                                       tmp_path: Path) -> None:
    """`sync` against a remote that never answers exits 1 at --git-timeout with an error
    naming the remote and the timeout; the error is recorded."""
    with gitservers.silent_server() as port:
        url = f"git://127.0.0.1:{port}/fleet.git"
        site = Site(root=tmp_path, remote_url=url, target=local_cluster)
        started = time.monotonic()
        failed = site.sync_cli("--git-timeout", "2s")
        took = time.monotonic() - started
    assert failed.returncode == 1
    message = (f"fetch of branch 'main' from {url} timed out after 2.0s (--git-timeout)")
    assert message in failed.stderr
    assert took < 20, took
    assert message in site.store.path.read_text()


@pytest.mark.parametrize("command", ["sync", "run"])
def test_git_dies_with_a_killed_reconciler(command: str, local_cluster: ClusterUnderTest,
                                           tmp_path: Path) -> None:
    """A reconciler SIGKILLed while git fetches from a silent remote takes git and its
    helpers (git-remote-http) with it within seconds: nothing is left hanging."""
    with gitservers.silent_server() as port:
        args = [sys.executable, "-m", "reconciler", command, "--repo",
                f"http://127.0.0.1:{port}/fleet.git", "--site", SITE,
                "--state-dir", str(tmp_path / "state"), "--git-timeout", "5m"]
        if command == "run":
            args += ["--interval", "1h", "--no-file-watch"]
        reconciler = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "KUBECONFIG": str(local_cluster.kubeconfig)})
        try:
            processes.wait_for(
                lambda: any("remote-http" in line
                            for line in processes.descendants(reconciler.pid).values()),
                timeout=30, what="git-remote-http running under the reconciler")
            children = processes.descendants(reconciler.pid)
        finally:
            reconciler.send_signal(signal.SIGKILL)
            reconciler.wait(timeout=10)
        processes.wait_for(lambda: not [pid for pid in children if processes.alive(pid)],
                           timeout=5, what=f"the reconciler's children {children} ending")
    assert any(line.startswith("git ") or "/git " in line for line in children.values())
