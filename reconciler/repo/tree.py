"""Read-only views of a repository's files at one revision. Called by bundle.load().

`GitTree` reads blobs from a commit without a checkout, so nothing in the repository can
point outside it: a symlink is a blob of mode 120000 and is refused, and `..` cannot
occur in a Git tree. `DirTree` reads a working directory (for `validate` on a checkout)
and refuses symlinks and paths that escape its root.
"""

from __future__ import annotations

import os
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
        """The object at `path`; a symlink anywhere on the way is refused, not skipped (a
        symlinked folder read as missing would look like a site with nothing desired)."""
        node: git.objects.base.IndexObject = self._tree
        for index, part in enumerate(path.parts):
            if part in ("", "."):
                continue
            if not isinstance(node, git.Tree):
                return None
            try:
                node = node / part
            except KeyError:
                return None
            if isinstance(node, git.Blob) and node.mode == _SYMLINK_MODE:
                where = "/".join(path.parts[:index + 1])
                raise errors.BundleError(
                    f"{where}: symbolic links are not allowed in a site's files")
        return node

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
    """A directory on disk, read with the same rules as a commit.

    Plain `os` calls, and directories found real are remembered: `validate` reads
    thousands of files through this, and pathlib's per-call costs add up.
    """

    def __init__(self, root: Path) -> None:
        self._root = os.path.realpath(root)
        self._real_dirs: set[str] = {""}  # relative dirs checked: a directory, not a symlink

    def _path(self, path: PurePosixPath) -> str:
        """The on-disk path, refusing `..` escapes and a symlink anywhere along the way.

        `..` is resolved by name first (what is opened is the normalised path); with no
        symlink on the way, a relative path cannot then leave the root.
        """
        if path.is_absolute():
            raise errors.BundleError(f"{path}: path escapes the repository root")
        parts: list[str] = []
        for part in path.parts:
            if part == "..":
                if not parts:
                    raise errors.BundleError(f"{path}: path escapes the repository root")
                parts.pop()
            elif part != ".":
                parts.append(part)
        rel = ""
        for part in parts:
            rel = f"{rel}/{part}" if rel else part
            if rel in self._real_dirs:
                continue
            full = os.path.join(self._root, rel)
            if os.path.islink(full):
                raise errors.BundleError(
                    f"{rel}: symbolic links are not allowed in a site's files")
            if os.path.isdir(full):
                self._real_dirs.add(rel)
        return os.path.join(self._root, rel) if rel else self._root

    def exists(self, path: PurePosixPath) -> bool:
        return os.path.exists(self._path(path))

    def is_dir(self, path: PurePosixPath) -> bool:
        return os.path.isdir(self._path(path))

    def files(self, under: PurePosixPath) -> Iterator[PurePosixPath]:
        base = self._path(under)
        if not os.path.isdir(base):
            return iter(())
        found: list[str] = []
        pending = [base]
        prefix = len(self._root) + 1
        while pending:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        raise errors.BundleError(f"{entry.path[prefix:]}: symbolic links are "
                                                 "not allowed in a site's files")
                    if entry.is_dir():
                        pending.append(entry.path)
                        self._real_dirs.add(entry.path[prefix:])
                    elif entry.is_file():
                        found.append(entry.path[prefix:])
        return iter(sorted(PurePosixPath(p) for p in found))

    def read(self, path: PurePosixPath, *, max_bytes: int) -> bytes:
        full = self._path(path)
        try:
            handle = open(full, "rb")  # noqa: SIM115 - closed below; fstat needs the handle
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise errors.BundleError(f"{path}: not a file") from exc
        with handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise errors.BundleError(f"{path}: not a file")
            if info.st_size > max_bytes:
                raise errors.BundleError(
                    f"{path}: file is {info.st_size} bytes, over the limit of {max_bytes} bytes"
                )
            return handle.read()
