"""Read-only repository views: GitTree over a real commit, DirTree over a directory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import git
import pytest

from reconciler import errors
from reconciler.repo import tree
from tests import gitrepo

P = PurePosixPath

# Written in an order that is neither sorted nor Git's own tree order (`a.yaml` < `a/`).
FILES = {
    "sites/s/b.yaml": "b: 1\n",
    "sites/s/a/z.yaml": "z: 1\n",
    "sites/s/a.yaml": "a: 1\n",
    "sites/s/A.yaml": "A: 1\n",
    "sites/s/notes.txt": "not yaml\n",
    "other/x.yaml": "x: 1\n",
}
SORTED = ["sites/s/A.yaml", "sites/s/a/z.yaml", "sites/s/a.yaml", "sites/s/b.yaml",
          "sites/s/notes.txt"]

MakeGitTree = Callable[..., tree.GitTree]


@pytest.fixture
def git_tree(tmp_path: Path) -> Iterator[MakeGitTree]:
    """Commit files (and symlinks) to a real repository and view that commit."""
    repos: list[git.Repo] = []

    def make(files: dict[str, str], *, symlinks: dict[str, str] | None = None) -> tree.GitTree:
        remote = gitrepo.GitRemote(tmp_path / f"git{len(repos)}")
        for path, text in files.items():
            remote.write(path, text)
        for link, target in (symlinks or {}).items():
            (remote.work / link).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, remote.work / link)
        sha = remote.commit("fixture")
        repo = git.Repo(remote.work)
        repos.append(repo)
        return tree.GitTree(repo.commit(sha))

    yield make
    for repo in repos:
        repo.close()


def write_dir(root: Path, files: dict[str, str]) -> tree.DirTree:
    """Write files below `root` and view it as a DirTree."""
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return tree.DirTree(root)


# --- GitTree ----------------------------------------------------------------------------


def test_git_tree_lists_files_below_a_folder_sorted_by_path(git_tree: MakeGitTree) -> None:
    """files() yields every blob below the folder, recursively, sorted by path parts."""
    view = git_tree(FILES)
    assert [str(p) for p in view.files(P("sites/s"))] == SORTED


def test_git_tree_lists_nothing_below_a_missing_folder(git_tree: MakeGitTree) -> None:
    """files() of a folder that is not in the commit, or is a file, is empty."""
    view = git_tree(FILES)
    assert list(view.files(P("sites/nope"))) == []
    assert list(view.files(P("sites/s/a.yaml"))) == []


def test_git_tree_tells_files_from_folders(git_tree: MakeGitTree) -> None:
    """exists() is true for files and folders; is_dir() only for folders."""
    view = git_tree(FILES)
    assert view.exists(P("sites/s/a.yaml")) and not view.is_dir(P("sites/s/a.yaml"))
    assert view.exists(P("sites/s/a")) and view.is_dir(P("sites/s/a"))
    assert view.is_dir(P("."))
    assert not view.exists(P("sites/s/missing.yaml"))
    assert not view.is_dir(P("sites/missing"))


def test_git_tree_reads_a_blob(git_tree: MakeGitTree) -> None:
    """read() returns the committed bytes of a file."""
    view = git_tree(FILES)
    assert view.read(P("sites/s/a/z.yaml"), max_bytes=100) == b"z: 1\n"


def test_git_tree_read_refuses_a_file_over_max_bytes(git_tree: MakeGitTree) -> None:
    """A file larger than max_bytes is refused, naming the file, its size and the limit."""
    view = git_tree({"big.yaml": "x" * 11})
    assert view.read(P("big.yaml"), max_bytes=11) == b"x" * 11
    with pytest.raises(errors.BundleError,
                       match=r"^big\.yaml: file is 11 bytes, over the limit of 10 bytes$"):
        view.read(P("big.yaml"), max_bytes=10)


def test_git_tree_read_refuses_a_folder_or_missing_file(git_tree: MakeGitTree) -> None:
    """Reading a path that is not a file is a BundleError naming the path."""
    view = git_tree(FILES)
    with pytest.raises(errors.BundleError, match=r"^sites/s/a: not a file$"):
        view.read(P("sites/s/a"), max_bytes=100)
    with pytest.raises(errors.BundleError, match=r"^sites/s/missing\.yaml: not a file$"):
        view.read(P("sites/s/missing.yaml"), max_bytes=100)


def test_git_tree_refuses_a_committed_symlink_when_listing(git_tree: MakeGitTree) -> None:
    """A symlink committed below the folder makes files() raise, naming the link."""
    view = git_tree(FILES, symlinks={"sites/s/link.yaml": "/etc/passwd"})
    with pytest.raises(errors.BundleError,
                       match=r"^sites/s/link\.yaml: symbolic links are not allowed"):
        list(view.files(P("sites/s")))


def test_git_tree_refuses_a_committed_symlink_when_reading(git_tree: MakeGitTree) -> None:
    """read() of a committed symlink is refused rather than returning its target path."""
    view = git_tree(FILES, symlinks={"sites/s/link.yaml": "a.yaml"})
    with pytest.raises(errors.BundleError,
                       match=r"^sites/s/link\.yaml: symbolic links are not allowed"):
        view.read(P("sites/s/link.yaml"), max_bytes=100)


def test_git_tree_refuses_a_committed_symlinked_folder(git_tree: MakeGitTree) -> None:
    """A symlink to a folder is a symlink blob too, and listing its parent refuses it."""
    view = git_tree(FILES, symlinks={"sites/t": "s"})
    with pytest.raises(errors.BundleError, match=r"^sites/t: symbolic links are not allowed"):
        list(view.files(P("sites")))
    # Looked up directly, as bundle does for a site's manifests folder, it is refused too:
    # read as missing, it would make a site with nothing desired, and prune everything.
    for look in (view.is_dir, view.exists, lambda p: list(view.files(p))):
        with pytest.raises(errors.BundleError, match=r"^sites/t: symbolic links"):
            look(P("sites/t"))
        with pytest.raises(errors.BundleError, match=r"^sites/t: symbolic links"):
            look(P("sites/t/a.yaml"))


# --- DirTree ----------------------------------------------------------------------------


def test_dir_tree_lists_files_below_a_folder_sorted_by_path(tmp_path: Path) -> None:
    """files() yields every regular file below the folder, recursively, sorted by path."""
    view = write_dir(tmp_path / "repo", FILES)
    assert [str(p) for p in view.files(P("sites/s"))] == SORTED


def test_dir_tree_lists_nothing_below_a_missing_folder(tmp_path: Path) -> None:
    """files() of a folder that does not exist, or is a file, is empty."""
    view = write_dir(tmp_path / "repo", FILES)
    assert list(view.files(P("sites/nope"))) == []
    assert list(view.files(P("sites/s/a.yaml"))) == []


def test_dir_tree_tells_files_from_folders(tmp_path: Path) -> None:
    """exists() is true for files and folders; is_dir() only for folders."""
    view = write_dir(tmp_path / "repo", FILES)
    assert view.exists(P("sites/s/a.yaml")) and not view.is_dir(P("sites/s/a.yaml"))
    assert view.exists(P("sites/s/a")) and view.is_dir(P("sites/s/a"))
    assert not view.exists(P("sites/s/missing.yaml"))


def test_dir_tree_reads_a_file(tmp_path: Path) -> None:
    """read() returns the file's bytes."""
    view = write_dir(tmp_path / "repo", FILES)
    assert view.read(P("sites/s/a/z.yaml"), max_bytes=100) == b"z: 1\n"


def test_dir_tree_read_refuses_a_file_over_max_bytes(tmp_path: Path) -> None:
    """A file larger than max_bytes is refused, naming the file, its size and the limit."""
    view = write_dir(tmp_path / "repo", {"big.yaml": "x" * 11})
    assert view.read(P("big.yaml"), max_bytes=11) == b"x" * 11
    with pytest.raises(errors.BundleError,
                       match=r"^big\.yaml: file is 11 bytes, over the limit of 10 bytes$"):
        view.read(P("big.yaml"), max_bytes=10)


def test_dir_tree_refuses_a_symlinked_file_when_listing(tmp_path: Path) -> None:
    """A symlink below the folder, even to a file inside the root, makes files() raise."""
    view = write_dir(tmp_path / "repo", FILES)
    os.symlink("a.yaml", tmp_path / "repo/sites/s/link.yaml")
    with pytest.raises(errors.BundleError,
                       match=r"^sites/s/link\.yaml: symbolic links are not allowed"):
        list(view.files(P("sites/s")))


def test_dir_tree_refuses_reading_a_symlink_inside_the_root(tmp_path: Path) -> None:
    """read() of a symlink is refused even when its target is inside the root."""
    view = write_dir(tmp_path / "repo", FILES)
    os.symlink("a.yaml", tmp_path / "repo/sites/s/link.yaml")
    with pytest.raises(errors.BundleError,
                       match=r"^sites/s/link\.yaml: symbolic links are not allowed"):
        view.read(P("sites/s/link.yaml"), max_bytes=100)


def test_dir_tree_refuses_a_symlink_pointing_outside_the_root(tmp_path: Path) -> None:
    """A symlink to a file outside the root is never read."""
    (tmp_path / "secret.yaml").write_text("password: hunter2\n", encoding="utf-8")
    view = write_dir(tmp_path / "repo", FILES)
    os.symlink(tmp_path / "secret.yaml", tmp_path / "repo/sites/s/link.yaml")
    with pytest.raises(errors.BundleError, match=r"^sites/s/link\.yaml: "):
        view.read(P("sites/s/link.yaml"), max_bytes=100)


def test_dir_tree_refuses_a_symlinked_folder_below_the_listed_one(tmp_path: Path) -> None:
    """A symlink to a folder below the listed folder makes files() raise."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/x.yaml").write_text("x: 1\n", encoding="utf-8")
    view = write_dir(tmp_path / "repo", FILES)
    os.symlink(tmp_path / "outside", tmp_path / "repo/sites/s/linked")
    with pytest.raises(errors.BundleError,
                       match=r"^sites/s/linked: symbolic links are not allowed"):
        list(view.files(P("sites/s")))


@pytest.mark.parametrize("path", ["../secret.yaml", "sites/../../secret.yaml"])
def test_dir_tree_refuses_paths_that_escape_the_root(tmp_path: Path, path: str) -> None:
    """A `..` path out of the root is refused by read(), exists() and is_dir()."""
    (tmp_path / "secret.yaml").write_text("password: hunter2\n", encoding="utf-8")
    view = write_dir(tmp_path / "repo", FILES)
    for call in (
        lambda: view.read(P(path), max_bytes=100),
        lambda: view.exists(P(path)),
        lambda: view.is_dir(P(path)),
    ):
        with pytest.raises(errors.BundleError, match="path escapes the repository root"):
            call()


def test_dir_tree_allows_dot_dot_that_stays_inside_the_root(tmp_path: Path) -> None:
    """A `..` that resolves back inside the root is an ordinary path."""
    view = write_dir(tmp_path / "repo", FILES)
    assert view.read(P("sites/s/a/../b.yaml"), max_bytes=100) == b"b: 1\n"


def test_dir_tree_listing_refuses_a_folder_outside_the_root(tmp_path: Path) -> None:
    """files() of a `..` folder out of the root is refused, like read() and exists()."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/x.yaml").write_text("x: 1\n", encoding="utf-8")
    view = write_dir(tmp_path / "repo", FILES)
    with pytest.raises(errors.BundleError, match="path escapes the repository root"):
        list(view.files(P("../outside")))


def test_dir_tree_refuses_a_file_reached_through_a_symlinked_folder(tmp_path: Path) -> None:
    """A symlinked folder on the way to a file is refused, as GitTree refuses it."""
    view = write_dir(tmp_path / "repo", FILES)
    os.symlink("s", tmp_path / "repo/sites/b")
    with pytest.raises(errors.BundleError, match="symbolic links are not allowed"):
        list(view.files(P("sites/b")))
    with pytest.raises(errors.BundleError, match="symbolic links are not allowed"):
        view.read(P("sites/b/a.yaml"), max_bytes=100)


def test_dir_tree_read_of_a_missing_file_is_a_bundle_error(tmp_path: Path) -> None:
    """Reading a path that is not a file is a BundleError, as with GitTree."""
    view = write_dir(tmp_path / "repo", FILES)
    with pytest.raises(errors.BundleError, match=r"^sites/s/missing\.yaml: "):
        view.read(P("sites/s/missing.yaml"), max_bytes=100)
