"""The git cache repairs itself: stale lock files left by a killed fetch are removed, and a
damaged cache (garbage HEAD, not a repository, truncated pack, missing objects) is
re-created by a fresh fetch, with the history guard still in force. Real git throughout."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.repo import cache, source
from tests import gitrepo


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def fetched(remote: gitrepo.GitRemote, cache_dir: Path) -> tuple[source.Source, str]:
    """A Source whose cache holds the remote's head, and that head."""
    repo = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    return repo, repo.fetch(last_head=None).sha


def raw_fetch(repo: source.Source) -> subprocess.CompletedProcess[str]:
    """git's own fetch into the cache, with no repair: what a sync did before."""
    return subprocess.run(
        ["git", "--git-dir", str(repo.cache_path), "fetch", "--no-tags", repo.url,
         "+refs/heads/main:refs/reconciler/heads/main"], capture_output=True, text=True,
        check=False)


LOCKS = ["refs/reconciler/heads/main.lock", "packed-refs.lock", "shallow.lock",
         "config.lock", "index.lock", "HEAD.lock"]


@pytest.mark.parametrize("lock", LOCKS)
def test_stale_lock_is_removed_and_the_fetch_succeeds(
        remote: gitrepo.GitRemote, cache_dir: Path, lock: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A lock file left by a git killed mid-fetch is removed (a warning names it) and the
    next fetch gets the new head."""
    repo, first = fetched(remote, cache_dir)
    (repo.cache_path / lock).write_text("")
    remote.write("later.yaml", "x: 1\n")
    newer = remote.commit_and_push("Later")
    caplog.set_level(logging.WARNING)
    assert repo.fetch(last_head=first).sha == newer
    assert not (repo.cache_path / lock).exists()
    assert f"removed the stale git lock {repo.cache_path / lock}" in caplog.text


def test_stale_ref_lock_blocks_git_itself(remote: gitrepo.GitRemote, cache_dir: Path) -> None:
    """Without the repair the ref lock blocks git's fetch: what the repair is for."""
    repo, _ = fetched(remote, cache_dir)
    (repo.cache_path / "refs/reconciler/heads/main.lock").write_text("")
    remote.write("later.yaml", "x: 1\n")
    remote.commit_and_push("Later")
    done = raw_fetch(repo)
    assert done.returncode != 0 and ".lock" in done.stderr


def test_locks_are_found_under_refs_and_top_only(tmp_path: Path) -> None:
    """stale_locks finds lock files at the top and under refs/, never in loose objects."""
    root = tmp_path / "c.git"
    for name in ("packed-refs.lock", "refs/remotes/o/x.lock", "objects/ab/cd.lock"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    assert cache.stale_locks(root) == [root / "packed-refs.lock", root / "refs/remotes/o/x.lock"]


def damage_head(path: Path) -> None:
    (path / "HEAD").write_bytes(b"\x00\xffgarbage")


def make_a_file(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
    path.write_text("not a repository")


def make_not_a_repository(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
    path.mkdir()
    (path / "stray.txt").write_text("x")


def truncate_pack(path: Path) -> None:
    subprocess.run(["git", "--git-dir", str(path), "repack", "-adq"], check=True)
    (pack,) = (path / "objects" / "pack").glob("*.pack")
    pack.chmod(0o644)
    with pack.open("r+b") as handle:
        handle.truncate(64)


def lose_objects(path: Path) -> None:
    loose = [p for p in (path / "objects").glob("??/*")]
    assert loose, "expected loose objects in the cache"
    for item in loose[: len(loose) // 2]:
        item.unlink()


DAMAGE = {"garbage HEAD": damage_head, "a file": make_a_file,
          "not a repository": make_not_a_repository, "truncated pack": truncate_pack,
          "missing objects": lose_objects}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_damaged_cache_is_recreated_by_a_fresh_fetch(
        remote: gitrepo.GitRemote, cache_dir: Path, how: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A damaged cache is detected, removed with a warning that says why, and filled again
    by a fresh fetch whose head is the remote's; its files read back."""
    repo, first = fetched(remote, cache_dir)
    cache.forget(repo.cache_path)  # as a new process: the cache is checked on first use
    DAMAGE[how](repo.cache_path)
    remote.write("later.yaml", "x: 1\n")
    newer = remote.commit_and_push("Later")
    caplog.set_level(logging.WARNING)
    again = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    assert again.fetch(last_head=first).sha == newer
    assert f"the git cache {repo.cache_path} is damaged" in caplog.text
    assert again.commit(newer).tree["later.yaml"].data_stream.read() == b"x: 1\n"
    assert cache.damage(repo.cache_path) is None


def test_history_guard_holds_after_the_cache_is_recreated(
        remote: gitrepo.GitRemote, cache_dir: Path) -> None:
    """The guard compares with the head the state recorded, not the cache: after the cache
    is re-created, a force-pushed rewrite is still refused."""
    repo, first = fetched(remote, cache_dir)
    remote.write("later.yaml", "x: 1\n")
    remote.commit_and_push("Later")
    second = repo.fetch(last_head=first).sha
    damage_head(repo.cache_path)
    remote.reset_hard(first)
    remote.write("other.yaml", "y: 2\n")
    remote.commit("Rewritten")
    remote.push(force=True)
    with pytest.raises(errors.HistoryRewriteError, match="was rewritten"):
        repo.fetch(last_head=second)


def test_damage_names_what_fsck_found(remote: gitrepo.GitRemote, cache_dir: Path) -> None:
    """damage() says what is wrong in one line, and None for a sound cache."""
    repo, _ = fetched(remote, cache_dir)
    assert cache.damage(repo.cache_path) is None
    truncate_pack(repo.cache_path)
    found = cache.damage(repo.cache_path)
    assert found is not None and "pack" in found


def test_garbage_head_is_named(tmp_path: Path) -> None:
    """problem() names a garbage HEAD, a missing folder and a file in the cache's place."""
    root = tmp_path / "c.git"
    (root / "objects").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "HEAD").write_text("ref: refs/heads/main\n")
    assert cache.problem(root) is None
    damage_head(root)
    assert cache.problem(root) == "its HEAD is garbage"
    (root / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "refs").rmdir()
    assert cache.problem(root) == "it has no refs/ folder"
    assert cache.problem(tmp_path / "absent.git") is None
    (tmp_path / "file.git").write_text("x")
    assert cache.problem(tmp_path / "file.git") == "it is not a folder"
