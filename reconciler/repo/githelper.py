"""The two small programs git's remote commands run under. Started by source, run by git.

They run as scripts under `python -I -S` (no site-packages, no PYTHON* variables), so this
module imports the standard library only, and never `reconciler`.

`supervise PARENT_PID -- git ...`: the parent of every git command that reaches a remote.
`source.run_remote()` starts it as the leader of a process group of its own; git, and what
git starts (git-remote-https, ssh, index-pack), inherit that group. When the reconciler
dies, even by SIGKILL, the kernel sends this process SIGTERM (PR_SET_PDEATHSIG; elsewhere
than Linux it notices that its parent changed within a second), and it kills the whole
group: no git outlives the reconciler. A timeout is the reconciler's: it kills the group.

`credential FILE PROTOCOL HOST get|store|erase`: git's credential helper for
`--git-credentials-file`. For `get`, and only when git asks about PROTOCOL://HOST (the
configured repository's, never a host a redirect names), it reads FILE and answers the
user name and password; `store` and `erase` are ignored. The secret so passes from the
file to git through a pipe: never in an argument, an environment variable or a URL.
`read_credentials()` is the one reader of the file's format, used here and by
`source.Access.check()`.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

TOKEN_USER = "x-access-token"  # the user name sent with a bare token (GitHub's; GitLab's
# and Bitbucket's servers take any user name with a token as the password)
_MAX_CREDENTIALS_BYTES = 64 * 1024
_PR_SET_PDEATHSIG = 1
# `https://user:token@host`, a line of git's credential store: split at its first colon,
# it would send `https` as the user name.
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class CredentialsError(Exception):
    """The credentials file cannot be read or is not in the documented format."""


def read_credentials(path: Path) -> tuple[str, str]:
    """(user name, password) from `path`, without ever putting the secret in a message.

    A file holds one line: `username:password`, or a bare token (sent as the password of
    user `x-access-token`); whitespace around it, a trailing newline included, is ignored.
    A URL (a line of git's credential store) is refused.
    A folder (a mounted Kubernetes Secret of type kubernetes.io/basic-auth) holds the files
    `password` and, optionally, `username`.
    """
    if path.is_dir():
        password = _read_one(path / "password",
                             what=f"{path}/password (the Secret's password key)")
        user_file = path / "username"
        user = (_read_one(user_file, what=f"{user_file} (the Secret's username key)")
                if user_file.exists() else TOKEN_USER)
        return _checked(user, password, path=path)
    text = _read_one(path, what=str(path))
    if _URL_START.match(text):
        raise CredentialsError(
            f"credentials file {path} holds a URL (the format of git's credential store): "
            "write `username:password`, or a bare token, alone on the line")
    user, colon, password = text.partition(":")
    if not colon:
        return _checked(TOKEN_USER, text, path=path)
    if not user or not password:
        raise CredentialsError(
            f"credentials file {path}: `username:password` needs both parts (or write a "
            "bare token alone on the line)")
    return _checked(user, password, path=path)


def _read_one(path: Path, *, what: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_CREDENTIALS_BYTES + 1)
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {what}: {exc.strerror}") from None
    if len(data) > _MAX_CREDENTIALS_BYTES:
        raise CredentialsError(f"credentials file {what} is larger than 64 KiB: not a "
                               "credential")
    try:
        text = data.decode("utf-8-sig").strip()  # -sig: a BOM an editor wrote is no part of it
    except UnicodeDecodeError:
        raise CredentialsError(f"credentials file {what} is not UTF-8 text") from None
    if not text:
        raise CredentialsError(f"credentials file {what} is empty")
    if "\n" in text or "\r" in text:
        raise CredentialsError(
            f"credentials file {what} has more than one line: it holds one line, "
            "`username:password` or a bare token")
    return text


def _checked(user: str, password: str, *, path: Path) -> tuple[str, str]:
    if "\0" in user or "\0" in password:
        raise CredentialsError(f"credentials file {path} holds a NUL byte")
    return user, password


def _credential(path: str, protocol: str, host: str, action: str) -> int:
    request: dict[str, str] = {}
    for line in sys.stdin.read().splitlines():
        key, equals, value = line.partition("=")
        if equals:
            request[key] = value
    if action != "get":
        return 0
    if (request.get("protocol", "").lower() != protocol.lower()
            or request.get("host", "").lower() != host.lower()):
        return 0  # another host (a redirect, a submodule): it gets nothing from this file
    try:
        user, password = read_credentials(Path(path))
    except CredentialsError as exc:
        print(f"reconciler: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(f"username={user}\npassword={password}\n")
    return 0


def death_signal(signum: int) -> Callable[[], None] | None:
    """A function that asks the kernel to send `signum` to the calling process when its
    parent thread ends (Linux's PR_SET_PDEATHSIG, kept across exec); None elsewhere.

    libc is looked up here, once, so the function can run between fork and exec (a
    `preexec_fn`) without loading anything.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # libc, already loaded by Python
    except AttributeError:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl

    def ask() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return ask


def _supervise(parent: int, command: Sequence[str]) -> int:
    def end_group(_signum: int = 0, _frame: object = None) -> None:
        os.killpg(os.getpgrp(), signal.SIGKILL)  # git, its helpers, and this process

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, end_group)
    ask = death_signal(signal.SIGTERM)
    if ask is not None:
        ask()
    watched = ask is not None
    if os.getppid() != parent:  # the parent died before the kernel was asked to tell us
        end_group()
    try:
        child = subprocess.Popen(list(command))
    except OSError as exc:
        print(f"reconciler: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    while True:
        try:
            status = child.wait(timeout=None if watched else 1.0)
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:
                end_group()
            continue
        return status if status >= 0 else 128 - status


def main(argv: Sequence[str]) -> int:
    if len(argv) >= 4 and argv[0] == "supervise" and argv[2] == "--":
        return _supervise(int(argv[1]), argv[3:])
    if len(argv) == 5 and argv[0] == "credential":
        return _credential(*argv[1:])
    print("usage: githelper.py supervise PARENT_PID -- COMMAND... | "
          "credential FILE PROTOCOL HOST ACTION", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
