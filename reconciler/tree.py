"""Read-only views of a repository's files at one revision. Called by bundle.load().

`GitTree` reads blobs from a commit without a checkout, so nothing in the repository can
point outside it: a symlink is a blob of mode 120000 and is refused, and `..` cannot
occur in a Git tree. `DirTree` reads a working directory (for `validate` on a checkout)
and refuses symlinks and paths that escape its root.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Protocol

import git

from reconciler import errors

_SYMLINK_MODE = 0o120000


class Tree(Protocol):
    """The files of one revision, by repository-relative POSIX path."""

    def exists(self, path: PurePosixPath) -> bool: ...

    def is_dir(self, path: PurePosixPath) -> bool: ...

    def files(self, under: PurePosixPath) -> Iterator[PurePosixPath]:
        """Every regular file below `under`, sorted by path."""
        ...

    def read(self, path: PurePosixPath, *, max_bytes: int) -> bytes: ...


class GitTree:
    """A commit's tree, read from Git's object store."""

    def __init__(self, commit: git.Commit) -> None:
        self._tree = commit.tree

    def _lookup(self, path: PurePosixPath) -> git.objects.base.IndexObject | None:
        if str(path) in ("", "."):
            return self._tree
        try:
            return self._tree / str(path)
        except KeyError:
            return None

    def exists(self, path: PurePosixPath) -> bool:
        return self._lookup(path) is not None

    def is_dir(self, path: PurePosixPath) -> bool:
        return isinstance(self._lookup(path), git.Tree)

    def files(self, under: PurePosixPath) -> Iterator[PurePosixPath]:
        node = self._lookup(under)
        if not isinstance(node, git.Tree):
            return iter(())
        found: list[PurePosixPath] = []
        for item in node.traverse():
            if isinstance(item, git.Blob):
                if item.mode == _SYMLINK_MODE:
                    raise errors.BundleError(
                        f"{item.path}: symbolic links are not allowed in a site's files"
                    )
                found.append(PurePosixPath(item.path))
        return iter(sorted(found))

    def read(self, path: PurePosixPath, *, max_bytes: int) -> bytes:
        node = self._lookup(path)
        if not isinstance(node, git.Blob):
            raise errors.BundleError(f"{path}: not a file")
        if node.mode == _SYMLINK_MODE:
            raise errors.BundleError(f"{path}: symbolic links are not allowed in a site's files")
        if node.size > max_bytes:
            raise errors.BundleError(
                f"{path}: file is {node.size} bytes, over the limit of {max_bytes} bytes"
            )
        data: bytes = node.data_stream.read()
        return data


class DirTree:
    """A directory on disk, read with the same rules as a commit."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def _path(self, path: PurePosixPath) -> Path:
        """The on-disk path, refusing `..` escapes and a symlink anywhere along the way."""
        full = (self._root / path).resolve()
        if full != self._root and self._root not in full.parents:
            raise errors.BundleError(f"{path}: path escapes the repository root")
        step = self._root
        for part in path.parts:
            step = step / part
            if step.is_symlink():
                rel = step.relative_to(self._root).as_posix()
                raise errors.BundleError(
                    f"{rel}: symbolic links are not allowed in a site's files")
        return full

    def exists(self, path: PurePosixPath) -> bool:
        return self._path(path).exists()

    def is_dir(self, path: PurePosixPath) -> bool:
        return self._path(path).is_dir()

    def files(self, under: PurePosixPath) -> Iterator[PurePosixPath]:
        base = self._path(under)
        if not base.is_dir():
            return iter(())
        found: list[PurePosixPath] = []
        for item in base.rglob("*"):
            mode = item.lstat().st_mode
            rel = PurePosixPath(item.relative_to(self._root).as_posix())
            if stat.S_ISLNK(mode):
                raise errors.BundleError(f"{rel}: symbolic links are not allowed in a site's files")
            if stat.S_ISREG(mode):
                found.append(rel)
        return iter(sorted(found))

    def read(self, path: PurePosixPath, *, max_bytes: int) -> bytes:
        full = self._path(path)
        if not full.is_file():
            raise errors.BundleError(f"{path}: not a file")
        size = full.stat().st_size
        if size > max_bytes:
            raise errors.BundleError(
                f"{path}: file is {size} bytes, over the limit of {max_bytes} bytes"
            )
        return full.read_bytes()
