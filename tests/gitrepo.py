"""A real Git remote for tests: a bare repository plus a work tree that pushes to it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

_ENV = {
    "GIT_AUTHOR_NAME": "Manager", "GIT_AUTHOR_EMAIL": "manager@example.com",
    "GIT_COMMITTER_NAME": "Manager", "GIT_COMMITTER_EMAIL": "manager@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
}


def git(*args: str, cwd: Path) -> str:
    """Run git in `cwd`; raise with its stderr when it fails."""
    done = subprocess.run(["git", *args], cwd=cwd, env=_ENV, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


class GitRemote:
    """`bare` is what the reconciler fetches; `work` is where the manager edits and commits."""

    def __init__(self, root: Path, *, branch: str = "main") -> None:
        self.branch = branch
        self.bare = root / "remote.git"
        self.work = root / "work"
        self.bare.mkdir(parents=True)
        git("init", "-q", "--bare", f"--initial-branch={branch}", ".", cwd=self.bare)
        self.work.mkdir()
        git("init", "-q", f"--initial-branch={branch}", ".", cwd=self.work)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def copy_from(self, source: Path) -> None:
        """Put a whole tree (e.g. sample-repo/) into the work tree."""
        shutil.copytree(source, self.work, dirs_exist_ok=True)

    def write(self, path: str, text: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def read(self, path: str) -> str:
        return (self.work / path).read_text(encoding="utf-8")

    def remove(self, path: str) -> None:
        git("rm", "-rq", path, cwd=self.work)

    def commit(self, message: str) -> str:
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, *, force: bool = False) -> None:
        git("push", "-q", *(["--force"] if force else []), "origin",
            f"HEAD:refs/heads/{self.branch}", cwd=self.work)

    def commit_and_push(self, message: str) -> str:
        sha = self.commit(message)
        self.push()
        return sha

    def reset_hard(self, rev: str) -> None:
        git("reset", "-q", "--hard", rev, cwd=self.work)


def restamp(remote: GitRemote, *, site: str, new_id: str, sequence: int | None,
            keep_old: tuple[str, ...] = ()) -> None:
    """Write a new intent for `site` in the work tree: intent.yaml and every manifest get
    `new_id`, except the manifest files named in `keep_old`, which keep the old id."""
    intent_file = remote.work / "sites" / site / "intent.yaml"
    text = intent_file.read_text(encoding="utf-8")
    old_id = next(line.split(":", 1)[1].split("#")[0].strip()
                  for line in text.splitlines() if line.strip().startswith("id:"))
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("id:"):
            line = line.replace(old_id, new_id, 1)
        elif stripped.startswith("sequence:") and sequence is not None:
            line = line[: line.index("sequence:")] + f"sequence: {sequence}"
        lines.append(line)
    intent_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for path in sorted((remote.work / "sites" / site / "manifests").rglob("*.y*ml")):
        if path.name in keep_old:
            continue
        path.write_text(path.read_text(encoding="utf-8").replace(
            f"reconciler.dev/intent-id: {old_id}", f"reconciler.dev/intent-id: {new_id}"),
            encoding="utf-8")


GIT_SETTINGS = ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS",
                "GIT_SSH_COMMAND", "GIT_SSH", "GIT_ASKPASS", "SSH_ASKPASS", "XDG_CONFIG_HOME",
                "RECONCILER_GIT_CREDENTIALS_FILE", "RECONCILER_SSH_KEY_FILE",
                "RECONCILER_KNOWN_HOSTS_FILE", "RECONCILER_GIT_TIMEOUT")


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """git kept away from the user's own configuration, credential helpers, ssh settings
    and the reconciler's git variables, so only what a test sets decides; returns HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in GIT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Manager")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "manager@example.com")
    return home
