"""One git environment for fetch and publish's push: the user's ssh command, never a prompt.

Real git, real repositories; the ssh commands are small scripts that record their call and
refuse the connection, so no ssh server is needed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from reconciler import contract, errors
from reconciler.manager import publish
from reconciler.repo import source
from tests import gitrepo, gitservers

SSH_URL = "ssh://git@fleet.example.invalid/srv/fleet.git"
SITE = "edge-sfo-01"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """git kept away from the user's own configuration and ssh settings; returns HOME."""
    return gitrepo.isolate(tmp_path, monkeypatch)


def fake_ssh(path: Path, *, name: str) -> Path:
    """An ssh command that appends its arguments to `<path>.log` and refuses to connect."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$*" >> "{path}.log"\n'
                    f'echo "{name}: refusing to connect" >&2\nexit 255\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(script: Path) -> list[str]:
    """The argument lists `script` was called with, one string per call."""
    log = Path(f"{script}.log")
    return log.read_text().splitlines() if log.exists() else []


def set_global(home: Path, key: str, value: str) -> None:
    gitrepo.git("config", "--file", str(home / ".gitconfig"), key, value, cwd=home)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def work(tmp_path: Path) -> Iterator[gitrepo.GitRemote]:
    """The sample fleet repository, committed and pushed, with an `ssh://` remote `fleet`."""
    repo = gitrepo.GitRemote(tmp_path / "git")
    repo.copy_from(contract.sample_repo_dir())
    repo.commit_and_push("Baseline intents")
    gitrepo.git("remote", "add", "fleet", SSH_URL, cwd=repo.work)
    yield repo


def publish_and_push(work: gitrepo.GitRemote, *, remote: str = "fleet") -> publish.PushError:
    """Publish an intent with --push to `remote`; the push is expected to fail."""
    options = publish.Options(repo=work.work, site=SITE, message="UPF 2.4",
                              intent_id="upf-2-4", push=True, remote=remote)
    with pytest.raises(publish.PushError) as caught:
        publish.publish(options=options)
    return caught.value


def fetch(cache_dir: Path, url: str = SSH_URL) -> errors.SourceError:
    """Fetch `main` of `url`; the fetch is expected to fail."""
    src = source.Source(url=url, branch="main", cache_dir=cache_dir)
    with pytest.raises(errors.SourceError) as caught:
        src.fetch(last_head=None)
    return caught.value


# --- the user's ssh command -------------------------------------------------------------------


@pytest.mark.parametrize("level", ["global", "GIT_CONFIG_GLOBAL", "repository"])
def test_fetch_over_ssh_uses_the_users_core_ssh_command(
        level: str, isolated: Path, cache_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """core.sshCommand, wherever git would read it, runs the fetch, and no BatchMode is added."""
    script = fake_ssh(tmp_path / "bin" / "user-ssh", name="user-ssh")
    if level == "global":
        set_global(isolated, "core.sshCommand", str(script))
    elif level == "GIT_CONFIG_GLOBAL":  # what GitPython's own config reader does not see
        config = tmp_path / "elsewhere.gitconfig"
        gitrepo.git("config", "--file", str(config), "core.sshCommand", str(script),
                    cwd=tmp_path)
        monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    else:  # the fetch cache's own config
        src = source.Source(url=SSH_URL, branch="main", cache_dir=cache_dir)
        gitrepo.git("config", "core.sshCommand", str(script), cwd=Path(str(src.repo.git_dir)))
    error = fetch(cache_dir)
    assert calls(script), "core.sshCommand was not used"
    assert all("BatchMode" not in call for call in calls(script))
    assert "user-ssh: refusing to connect" in str(error)  # what the ssh command said
    assert str(error).endswith("fatal: Could not read from remote repository.")


def test_push_over_ssh_uses_the_repositorys_core_ssh_command(
        work: gitrepo.GitRemote, tmp_path: Path) -> None:
    """publish --push runs the work tree's core.sshCommand, and says what it answered."""
    script = fake_ssh(tmp_path / "bin" / "repo-ssh", name="repo-ssh")
    gitrepo.git("config", "core.sshCommand", str(script), cwd=work.work)
    error = publish_and_push(work)
    assert calls(script), "core.sshCommand was not used"
    assert all("BatchMode" not in call for call in calls(script))
    assert str(error).startswith(
        f"push to fleet ({SSH_URL}) failed: repo-ssh: refusing to connect; fatal: Could not "
        "read from remote repository. The intent commit ")
    assert error.published.commit is not None  # committed, not pushed


def test_git_ssh_command_wins_over_core_ssh_command(
        work: gitrepo.GitRemote, isolated: Path, cache_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """GIT_SSH_COMMAND in the environment beats core.sshCommand, for fetch and push alike."""
    configured = fake_ssh(tmp_path / "bin" / "configured-ssh", name="configured-ssh")
    chosen = fake_ssh(tmp_path / "bin" / "env-ssh", name="env-ssh")
    set_global(isolated, "core.sshCommand", str(configured))
    gitrepo.git("config", "core.sshCommand", str(configured), cwd=work.work)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(chosen))
    assert "env-ssh: refusing to connect" in str(fetch(cache_dir))
    assert "env-ssh: refusing to connect" in str(publish_and_push(work))
    assert len(calls(chosen)) >= 2 and calls(configured) == []


def test_without_an_ssh_command_ssh_runs_in_batch_mode(
        work: gitrepo.GitRemote, cache_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing configured, fetch and push run `ssh -o BatchMode=yes`: no prompt for a
    password, a passphrase or an unknown host key."""
    script = fake_ssh(tmp_path / "path" / "ssh", name="ssh")
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    fetch(cache_dir)
    publish_and_push(work)
    assert len(calls(script)) == 2
    assert all(call.startswith("-o BatchMode=yes ") for call in calls(script))


# --- never a prompt -----------------------------------------------------------------------------


def prompts_and_ssh(env: dict[str, str]) -> dict[str, str]:
    """The part of a git environment about prompts and ssh (not GIT_CONFIG_*)."""
    return {k: v for k, v in env.items() if not k.startswith("GIT_CONFIG_")}


def test_git_environment_turns_prompts_off_and_keeps_what_the_user_set(
        tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No terminal prompt, an askpass that answers nothing, ssh in batch mode with strict
    host key checking; but a user's askpass or ssh command (environment or config) is kept
    as it is."""
    repo = git.Repo.init(tmp_path / "repo", bare=True)
    assert prompts_and_ssh(source.git_environment(repo)) == {
        "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes "
                           "-o ConnectTimeout=30 -o ServerAliveInterval=10 "
                           "-o ServerAliveCountMax=3"}
    monkeypatch.setenv("GIT_ASKPASS", "/ci/token-helper")
    monkeypatch.setenv("SSH_ASKPASS", "/ci/passphrase-helper")
    monkeypatch.setenv("GIT_SSH", "/ci/plink")
    assert prompts_and_ssh(source.git_environment(repo)) == {"GIT_TERMINAL_PROMPT": "0"}
    for name in ("GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSH"):
        monkeypatch.delenv(name)
    set_global(isolated, "core.askPass", "/home/me/askpass")
    gitrepo.git("config", "core.sshCommand", "ssh -i /home/me/key", cwd=Path(str(repo.git_dir)))
    assert prompts_and_ssh(source.git_environment(repo)) == {
        "GIT_TERMINAL_PROMPT": "0", "SSH_ASKPASS": "true"}


@pytest.mark.timeout(60)
def test_a_server_asking_for_credentials_fails_fetch_and_push_without_a_prompt(
        work: gitrepo.GitRemote, cache_dir: Path, tmp_path: Path) -> None:
    """An HTTP remote that wants a password gets none: fetch and push fail, nothing waits."""
    with gitservers.git_http(work.bare.parent, user="manager", password="s3cret") as base:
        url = f"{base}/{work.bare.name}"
        fetched = fetch(cache_dir, url)
        gitrepo.git("remote", "add", "locked", url, cwd=work.work)
        pushed = publish_and_push(work, remote="locked")
    for error in (fetched, pushed):
        assert "Authentication failed" in str(error) or "could not read Username" in str(error)
