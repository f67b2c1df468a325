"""Git as a production client: credentials from a file, strict ssh, timeouts, no orphans.

Real git against real servers on loopback (`git http-backend` behind Basic auth, a TCP
server that never answers); processes are read from /proc. No cluster: the end-to-end
half, through `reconciler sync` and a real sshd, is tests/e2e/test_git_client.py.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.manager import publish
from reconciler.repo import githelper, source
from tests import gitrepo, gitservers, processes

SECRET = "glpat-s3cr3t-t0ken-value"
SITE = "edge-sfo-01"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git kept away from the user's configuration, helpers and ssh settings."""
    gitrepo.isolate(tmp_path, monkeypatch)


def write_secret(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


# --- the credentials file ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("site:hunter2\n", ("site", "hunter2")),
    ("  site:pass:with:colons  \r\n", ("site", "pass:with:colons")),
    (f"{SECRET}\n", (githelper.TOKEN_USER, SECRET)),
    ("\ufeffsite:hunter2\r\n", ("site", "hunter2")),  # saved by an editor with a BOM
])
def test_a_credentials_file_holds_user_and_password_or_a_token(
        text: str, expected: tuple[str, str], tmp_path: Path) -> None:
    """One line: `username:password` (split at the first colon), or a bare token sent as
    the password of x-access-token; surrounding whitespace and the newline are ignored."""
    assert githelper.read_credentials(write_secret(tmp_path / "creds", text)) == expected


def test_a_mounted_basic_auth_secret_is_read_from_its_folder(tmp_path: Path) -> None:
    """A folder holds `password` and, optionally, `username`: a kubernetes.io/basic-auth
    Secret as a volume mounts it."""
    folder = tmp_path / "secret"
    write_secret(folder / "password", SECRET + "\n")
    assert githelper.read_credentials(folder) == (githelper.TOKEN_USER, SECRET)
    write_secret(folder / "username", "site\n")
    assert githelper.read_credentials(folder) == ("site", SECRET)


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"),
    (f"site:{SECRET}\nsecond:{SECRET}\n", "has more than one line"),
    (f":{SECRET}", "needs both parts"),
    ("site:", "needs both parts"),
    (f"https://site:{SECRET}@git.example.com\n", "holds a URL"),
])
def test_a_malformed_credentials_file_is_a_usage_error_that_never_shows_it(
        text: str, message: str, tmp_path: Path) -> None:
    """A credentials file that cannot serve is refused before any fetch, with what is wrong
    with it and never what it holds."""
    path = write_secret(tmp_path / "creds", text)
    with pytest.raises(errors.UsageError, match=message) as caught:
        source.Access(credentials_file=path).check()
    assert SECRET not in str(caught.value) and str(path) in str(caught.value)


def test_missing_files_and_a_key_others_can_read_are_usage_errors(tmp_path: Path) -> None:
    """Each flag's file is checked up front: missing, or an ssh key ssh would refuse for
    its mode, and the message says what to do."""
    with pytest.raises(errors.UsageError, match="--git-credentials-file: cannot read"):
        source.Access(credentials_file=tmp_path / "nope").check()
    with pytest.raises(errors.UsageError, match=r"--known-hosts-file .*: cannot read"):
        source.Access(known_hosts_file=tmp_path / "nope").check()
    key = write_secret(tmp_path / "id_ed25519", "key")
    key.chmod(0o644)
    with pytest.raises(errors.UsageError, match="defaultMode: 0400"):
        source.Access(ssh_key_file=key).check()
    key.chmod(0o400)
    source.Access(ssh_key_file=key).check()
    with pytest.raises(errors.UsageError, match="--git-timeout must be positive"):
        source.Access(timeout=0).check()


def test_the_environment_names_the_helper_and_the_file_never_the_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a credentials file, git's environment replaces the user's credential helpers
    with ours for the repository's host, after the user's own GIT_CONFIG_* entries; no
    variable holds the secret."""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "user.name")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "Someone")
    creds = write_secret(tmp_path / "creds", f"site:{SECRET}")
    repo = source.Repo.init(tmp_path / "cache.git", bare=True)
    env = source.git_environment(repo, url="https://git.example.com:8443/fleet.git",
                                 access=source.Access(credentials_file=creds, timeout=10))
    config = {env[f"GIT_CONFIG_KEY_{i}"]: [] for i in range(1, int(env["GIT_CONFIG_COUNT"]))}
    for i in range(1, int(env["GIT_CONFIG_COUNT"])):
        config[env[f"GIT_CONFIG_KEY_{i}"]].append(env[f"GIT_CONFIG_VALUE_{i}"])
    assert "GIT_CONFIG_KEY_0" not in env  # the user's entry is left as it is
    assert config["http.lowSpeedLimit"] == ["1"] and config["http.lowSpeedTime"] == ["10"]
    empty, helper = config["credential.helper"]
    assert empty == ""
    assert helper.startswith("!") and str(creds) in helper
    assert helper.endswith(" credential " + f"{creds} https git.example.com:8443")
    assert not [k for k, v in env.items() if SECRET in v]


def credential_helper(creds: Path, request: str, action: str = "get",
                      host: str = "git.example.com") -> str:
    done = subprocess.run(
        [sys.executable, "-I", "-S", githelper.__file__, "credential", str(creds), "https",
         host, action], input=request, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout


def test_the_credential_helper_answers_only_for_the_repositorys_host(tmp_path: Path) -> None:
    """git asking about the repository's protocol and host gets the file's user and
    password; another host (a redirect), another protocol, or a store/erase gets nothing."""
    creds = write_secret(tmp_path / "creds", f"site:{SECRET}\n")
    asked = "protocol=https\nhost=git.example.com\n"
    assert credential_helper(creds, asked) == f"username=site\npassword={SECRET}\n"
    assert credential_helper(creds, "protocol=https\nhost=evil.example.com\n") == ""
    assert credential_helper(creds, "protocol=http\nhost=git.example.com\n") == ""
    assert credential_helper(creds, asked + f"username=site\npassword={SECRET}\n",
                             action="store") == ""
    assert credential_helper(creds, asked, action="erase") == ""


# --- fetch and push over HTTP with a credentials file ----------------------------------------


@linux_only
@pytest.mark.timeout(120)
def test_fetch_with_a_credentials_file_never_shows_the_secret_in_any_process(
        remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """A fetch from a server that demands Basic auth succeeds with the credentials file, and
    while it runs no process's command line or environment holds the token (in clear or
    base64), as any user could read them in /proc."""
    creds = write_secret(tmp_path / "creds", f"site:{SECRET}\n")
    encoded = base64.b64encode(f"site:{SECRET}".encode()).decode()
    seen: list[str] = []
    with gitservers.git_http(remote.bare.parent, user="site", password=SECRET, delay=0.3,
                             seen=seen) as base:
        src = source.Source(url=f"{base}/{remote.bare.name}", branch="main",
                            cache_dir=tmp_path / "cache",
                            access=source.Access(credentials_file=creds))
        with processes.scanning(SECRET, encoded) as scan:
            revision = src.fetch(last_head=None)
    assert revision.sha == gitrepo.git("rev-parse", "HEAD", cwd=remote.work)
    assert f"Basic {encoded}" in seen  # the server did get the credentials
    assert scan.leaks == []
    assert any("remote-http" in command for command in scan.git_commands), scan.git_commands
    assert scan.rounds > 3


@pytest.mark.timeout(120)
def test_a_rotated_secret_is_read_on_the_next_fetch(
        remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """The file is read when git asks, not at start: a wrong password fails the fetch
    (naming no secret), and the corrected file works without a restart."""
    creds = write_secret(tmp_path / "creds", f"site:wrong-{SECRET}\n")
    with gitservers.git_http(remote.bare.parent, user="site", password=SECRET) as base:
        src = source.Source(url=f"{base}/{remote.bare.name}", branch="main",
                            cache_dir=tmp_path / "cache",
                            access=source.Access(credentials_file=creds))
        with pytest.raises(errors.SourceError) as caught:
            src.fetch(last_head=None)
        assert "Authentication failed" in str(caught.value)
        assert SECRET not in str(caught.value)
        write_secret(creds, f"site:{SECRET}\n")
        assert src.fetch(last_head=None).sha


@pytest.mark.timeout(120)
def test_publish_pushes_with_the_credentials_file_and_refuses_a_url_with_a_token(
        remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """`intent publish --push` to an HTTP remote demanding Basic auth pushes with the
    credentials file; a push URL carrying a token is refused before anything is committed."""
    creds = write_secret(tmp_path / "creds", f"site:{SECRET}\n")
    work = remote.work
    with gitservers.git_http(remote.bare.parent, user="site", password=SECRET) as base:
        gitrepo.git("remote", "add", "locked", f"{base}/{remote.bare.name}", cwd=work)
        head = gitrepo.git("rev-parse", "HEAD", cwd=work)
        gitrepo.git("remote", "add", "leaky",
                    f"{base.replace('http://', f'http://site:{SECRET}@')}/{remote.bare.name}",
                    cwd=work)
        with pytest.raises(errors.UsageError, match="carries credentials") as caught:
            publish.publish(options=publish.Options(
                repo=work, site=SITE, message="UPF 2.4", intent_id="upf-2-4", push=True,
                remote="leaky", access=source.Access(credentials_file=creds)))
        assert SECRET not in str(caught.value)
        assert gitrepo.git("rev-parse", "HEAD", cwd=work) == head  # nothing committed
        published = publish.publish(options=publish.Options(
            repo=work, site=SITE, message="UPF 2.4", intent_id="upf-2-4", push=True,
            remote="locked", access=source.Access(credentials_file=creds)))
    assert published.pushed is not None
    assert gitrepo.git("rev-parse", "refs/heads/main", cwd=remote.bare) == published.commit


# --- timeouts ---------------------------------------------------------------------------------


@linux_only
@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_silent_remote_times_out_and_leaves_no_process(scheme: str, tmp_path: Path) -> None:
    """A remote that accepts the connection and never answers fails the fetch at the
    timeout with a retryable error naming the remote and the timeout, and no git process
    (nor git-remote-http below it) is left running."""
    with gitservers.silent_server() as port:
        url = f"{scheme}://127.0.0.1:{port}/fleet.git"
        src = source.Source(url=url, branch="main", cache_dir=tmp_path / "cache",
                            access=source.Access(timeout=1.5))
        started = time.monotonic()
        with pytest.raises(errors.SourceError) as caught:
            src.fetch(last_head=None)
        took = time.monotonic() - started
        left = {pid: line for pid, line in processes.descendants(os.getpid()).items()
                if str(port) in line or "supervise" in line}
    assert 1.0 <= took < 6.0, took
    assert caught.value.retryable
    message = str(caught.value)
    assert message.startswith(f"fetch of branch 'main' from {url} ")
    if scheme == "git":  # nothing in git:// gives up by itself: our timeout does
        assert "timed out after 1.5s (--git-timeout)" in message
    else:  # git's own stall limit (http.lowSpeedTime) may answer first
        assert "timed out after 1.5s" in message or "Operation too slow" in message
    assert left == {}


@linux_only
@pytest.mark.timeout(60)
def test_a_push_to_a_silent_remote_times_out(remote: gitrepo.GitRemote) -> None:
    """publish's push has the same timeout: the intent commit stays local, and the error
    says how long it waited and how to push it later."""
    work = remote.work
    with gitservers.silent_server() as port:
        gitrepo.git("remote", "add", "silent", f"git://127.0.0.1:{port}/fleet.git", cwd=work)
        with pytest.raises(publish.PushError) as caught:
            publish.publish(options=publish.Options(
                repo=work, site=SITE, message="UPF 2.4", intent_id="upf-2-4", push=True,
                remote="silent", access=source.Access(timeout=1)))
    assert "timed out after 1.0s (--git-timeout)" in str(caught.value)
    assert caught.value.retryable and caught.value.published.commit is not None


# --- no git outlives the reconciler -----------------------------------------------------------


@linux_only
@pytest.mark.timeout(60)
def test_gitpythons_commands_die_with_the_process_that_started_them(tmp_path: Path) -> None:
    """A command GitPython starts through `source.Repo` is killed when the reconciler is
    SIGKILLed (PR_SET_PDEATHSIG), even one that would otherwise run on."""
    repo_dir = tmp_path / "repo.git"
    gitrepo.git("init", "-q", "--bare", str(repo_dir), cwd=tmp_path)
    script = ("import sys, threading\nfrom reconciler.repo import source\n"
              f"repo = source.Repo({str(repo_dir)!r})\n"
              "child = repo.git.execute(['sleep', '120'], as_process=True)\n"
              "print(child.proc.pid, flush=True)\nthreading.Event().wait(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        child = int(holder.stdout.readline())
        assert processes.alive(child)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    processes.wait_for(lambda: not processes.alive(child), timeout=5,
                       what=f"the child {child} of a SIGKILLed process ending")


def test_a_child_of_run_remote_started_after_its_parent_died_ends_at_once() -> None:
    """The supervisor checks its parent right after asking to be told of its death: one
    whose parent is already gone kills its group instead of starting git."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", githelper.__file__, "supervise", "1", "--",
         "sleep", "60"], timeout=30, check=False, process_group=0)
    assert done.returncode == -signal.SIGKILL
