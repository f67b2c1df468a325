"""Fetch a branch into a local cache and guard its history. Called by pipeline, plan, agent.

The cache is a bare repository per URL that survives restarts, so a fetch after the
first one only moves what changed. A revision is the commit SHA of the fetched head;
its files are read straight from Git's object store (see `tree`), never checked out.

Git as a production client (issue #11), for fetch here and for publish's push alike:
* credentials come from a file (`Access.credentials_file`, a mounted Secret), handed to
  git by a credential helper through a pipe; a URL that carries any is refused;
* ssh runs in batch mode with strict host key checking, against `--known-hosts-file` when
  given: an unknown host is refused, never trusted on first use;
* every command that reaches a remote runs under `run_remote()`: a timeout, git's and
  ssh's own stall limits, and a process group that is killed whole at the timeout and
  when the reconciler dies (`githelper`);
* GitPython's local commands (`Repo`) die with the reconciler too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import math
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import git

from reconciler import durations, errors
from reconciler.repo import cache, githelper, signatures

_HEX = re.compile(r"[0-9a-fA-F]{7,40}")
_SCP_LIKE = re.compile(r"^(?P<user>[^@/]+@)?(?P<host>[^:/]+):(?P<path>.+)$")
# For redaction only, never to read structure from git's messages.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_USERINFO = re.compile(r"(://)[^/@\s]+@")

DEFAULT_TIMEOUT = 120.0  # --git-timeout: seconds one remote git command may take
STALL_SECONDS = 30  # git's and ssh's own limit on a remote that sends nothing, at most
_HELPER = Path(githelper.__file__).resolve()
_REAP_SECONDS = 5.0  # after the group is killed, how long to wait for its pipes to close
# Killed when this process ends: the git commands GitPython runs (see `Repo`).
_DIE_WITH_PARENT = githelper.death_signal(signal.SIGKILL)


class _Git(git.Git):
    """GitPython's command runner, whose every git is killed when this process ends.

    The commands GitPython runs here are local (reads of the cache, merge-base, publish's
    add and commit): no remote, so no timeout, but the same rule as `run_remote()`: none
    outlives the reconciler. PR_SET_PDEATHSIG is asked between fork and exec (on Linux):
    the kernel sends SIGKILL when the thread that started the command ends, which is why
    a `Repo` is used by the thread that opened it (each call of `Source` opens its own).
    """

    # Every overload of Git.execute() takes its arguments through here unchanged.
    def execute(self, *args: Any, **kwargs: Any) -> Any:
        if _DIE_WITH_PARENT is not None:
            kwargs.setdefault("preexec_fn", _DIE_WITH_PARENT)
        return super().execute(*args, **kwargs)


class Repo(git.Repo):
    """A GitPython repository whose git commands die with the reconciler (`_Git`)."""

    GitCommandWrapperType = _Git


@dataclasses.dataclass(frozen=True)
class Access:
    """How git reaches a remote: the CLI's --git-credentials-file, --ssh-key-file,
    --known-hosts-file and --git-timeout. Paths only: a secret stays in its file until git
    asks for it, so a rotated Secret is read on the next fetch."""

    credentials_file: Path | None = None  # `username:password` or a token; or a Secret folder
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None  # the one source of trusted ssh host keys
    timeout: float = DEFAULT_TIMEOUT  # seconds, for each remote git command

    @property
    def stall(self) -> int:
        """Seconds git (http.lowSpeedTime) and ssh (ConnectTimeout, ServerAlive*) wait on a
        remote that sends nothing: STALL_SECONDS, or the whole timeout when shorter."""
        return max(1, math.ceil(min(STALL_SECONDS, self.timeout)))

    def check(self) -> None:
        """Raise UsageError when a file cannot serve (missing, unreadable, malformed, a key
        ssh would refuse for its permissions) or the timeout is not positive. Never names
        a secret."""
        if not self.timeout > 0:
            raise errors.UsageError(f"--git-timeout must be positive, not {self.timeout:g}")
        if self.credentials_file is not None:
            try:
                githelper.read_credentials(self.credentials_file)
            except githelper.CredentialsError as exc:
                raise errors.UsageError(f"--git-credentials-file: {exc}") from None
        for flag, path in (("--ssh-key-file", self.ssh_key_file),
                           ("--known-hosts-file", self.known_hosts_file)):
            if path is None:
                continue
            try:
                with path.open("rb"):
                    pass
                info = path.stat()
            except OSError as exc:
                raise errors.UsageError(f"{flag} {path}: cannot read it: {exc.strerror}") from None
            if not stat.S_ISREG(info.st_mode):
                raise errors.UsageError(f"{flag} {path}: not a file")
            if flag == "--ssh-key-file" and info.st_uid == os.geteuid() and info.st_mode & 0o077:
                raise errors.UsageError(
                    f"--ssh-key-file {path}: others can read it (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}), so ssh would refuse the key: chmod 600 "
                    "it, or mount the Secret with defaultMode: 0400")
        known_hosts = str(self.known_hosts_file or "")
        if any(c.isspace() for c in known_hosts):
            raise errors.UsageError(f"--known-hosts-file {self.known_hosts_file}: ssh reads "
                                    "a space in this path as a list of files; use a path "
                                    "without spaces")


@dataclasses.dataclass(frozen=True)
class GitRun:
    """What one remote git command did (`run_remote()`)."""

    status: int | None  # None: killed at the timeout
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.status is None


@dataclasses.dataclass(frozen=True)
class Revision:
    """One fetched head: the commit every later stage reads from."""

    sha: str
    url: str  # redacted: never carries a password or token
    branch: str
    subject: str
    committed_at: str  # RFC 3339, UTC
    previous: str | None  # the head fetched before, if any


def redact_url(url: str) -> str:
    """The URL with any password or token replaced by `***`, for logs and state."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    if colon:
        netloc = f"{user}:***@{hostport}"
    elif parts.scheme in ("http", "https"):
        netloc = f"***@{hostport}"  # a bare token in the user part
    else:
        return url  # ssh://git@host: a user name, not a secret
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def normalize_url(url: str) -> str:
    """Plain paths become absolute `file://`-free paths; URLs pass unchanged."""
    if "://" in url or (_SCP_LIKE.match(url) and not Path(url).exists()):
        return url
    return str(Path(url).expanduser().resolve())


def check_url(url: str) -> None:
    """Refuse a URL that carries credentials: a URL shows in the process list (git passes
    it to its helpers' arguments), in logs and in the state. An ssh user name is no secret
    (`ssh://git@host/...`); an http(s) user part is treated as one (it is often a token)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return  # git says what is wrong with it
    if "://" not in url or "@" not in parts.netloc:
        return
    userinfo, _, hostport = parts.netloc.rpartition("@")
    secret = ":" in userinfo or parts.scheme.lower() in ("http", "https")
    if not secret:
        return
    bare = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    if parts.scheme.lower() in ("http", "https"):
        how = ("put them in a file and pass --git-credentials-file FILE (one line: "
               "username:password, or a token; or the folder a Secret is mounted at)")
    else:
        how = "authenticate with a key instead: --ssh-key-file FILE and --known-hosts-file FILE"
    raise errors.UsageError(
        f"the repository URL {redact_url(url)} carries credentials, which would show in the "
        f"process list, logs and state: {how}, and give the URL without them: {bare}")


class Source:
    """One repository branch, fetched into `cache_dir`."""

    def __init__(self, *, url: str, branch: str, cache_dir: Path,
                 access: Access | None = None) -> None:
        self.url = normalize_url(url)
        check_url(self.url)
        self.access = access or Access()
        self.access.check()
        self.branch = branch
        self.display_url = redact_url(self.url)
        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.cache_path = cache_dir / f"{key}.git"
        self._ref = f"refs/reconciler/heads/{branch}"

    def _repo(self) -> git.Repo:
        """The cache, repaired first (`cache.prepare()`: stale locks removed, a damaged
        cache re-created empty) or created."""
        with cache.held(self.cache_path):
            cache.prepare(self.cache_path)
            if (self.cache_path / "HEAD").exists():
                return _objects_as_stored(Repo(self.cache_path))
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            return _objects_as_stored(Repo.init(self.cache_path, bare=True))

    def _fetch(self, repo: git.Repo, refspecs: Sequence[str], *, what: str) -> None:
        """`git fetch` of `refspecs` under `run_remote()`; SourceError (retryable) when it
        fails or times out, naming the redacted URL, never git's command line.

        Runs holding the cache (`cache.held()`); when it fails and the cache itself is
        damaged (fsck), the cache is re-created and the fetch runs once more."""
        env = git_environment(repo, url=self.url, access=self.access)
        with cache.held(self.cache_path):
            cache.remove_stale_locks(self.cache_path)
            done = run_remote(
                ["--git-dir", str(repo.git_dir), "fetch", "--no-tags", "--prune",
                 "--end-of-options", self.url, *refspecs],
                cwd=Path(str(repo.git_dir)), env=env, timeout=self.access.timeout)
            damaged = None if done.status in (0, None) else cache.damage(self.cache_path)
            if damaged is not None:
                cache.recreate(self.cache_path, why=damaged)
                Repo.init(self.cache_path, bare=True)
                done = run_remote(
                    ["--git-dir", str(repo.git_dir), "fetch", "--no-tags", "--prune",
                     "--end-of-options", self.url, *refspecs],
                    cwd=Path(str(repo.git_dir)), env=env, timeout=self.access.timeout)
        if done.timed_out:
            raise errors.SourceError(
                f"{what} from {self.display_url} timed out after "
                f"{durations.format_seconds(self.access.timeout)} (--git-timeout): the remote "
                "did not answer in time; git and its helpers were stopped, and a later pass "
                "tries again")
        if done.status != 0:
            detail = describe_failure(done.stderr, status=done.status, url=self.url,
                                      access=self.access)
            raise errors.SourceError(f"{what} from {self.display_url} failed: {detail}")

    @property
    def repo(self) -> git.Repo:
        return self._repo()

    def fetch(self, *, last_head: str | None, allow_history_rewrite: bool = False,
              trust: signatures.Trust | None = None, site: str | None = None) -> Revision:
        """Fetch the branch and return its head; refuse a head that rewrote history, and
        with `trust` (--verify-signatures) one not signed by a trusted key or over a
        commit that changed `site`'s files without one (`verify`).

        Raises SourceError (retryable) when the fetch fails, HistoryRewriteError
        when the new head does not descend from `last_head`, and SignatureError when
        `trust` refuses the head (the branch's ref moves, the site's record does not).
        """
        repo = self._repo()
        self._fetch(repo, [f"+refs/heads/{self.branch}:{self._ref}"],
                    what=f"fetch of branch {self.branch!r}")
        head = repo.commit(self._ref)
        rewritten = (
            last_head is not None and last_head != head.hexsha
            and not _descends(repo, ancestor=last_head, head=head.hexsha)
        )
        if rewritten and not allow_history_rewrite:
            raise errors.HistoryRewriteError(
                f"branch {self.branch!r} of {self.display_url} was rewritten: new head "
                f"{head.hexsha[:12]} does not descend from the last fetched head "
                f"{(last_head or '')[:12]}; refusing it (pass --allow-history-rewrite to accept)"
            )
        if trust is not None:
            self.verify(head.hexsha, trust=trust, site=site,
                        base=None if rewritten else last_head,
                        where=f"branch {self.branch!r} of {self.display_url}")
        return Revision(
            sha=head.hexsha,
            url=self.display_url,
            branch=self.branch,
            subject=head.summary if isinstance(head.summary, str) else head.summary.decode(),
            committed_at=head.committed_datetime.astimezone(datetime.UTC).isoformat(),
            previous=last_head,
        )

    def fetch_ref(self, ref: str) -> Revision:
        """Fetch any ref (a branch, a tag, `HEAD`, `refs/pull/42/head`, a commit SHA) for a
        look at it; the followed branch's own ref and its history guard are not touched."""
        repo = self._repo()
        space = "refs/reconciler/plan"
        refspecs = [f"+refs/heads/*:{space}/heads/*", f"+refs/tags/*:{space}/tags/*"]
        if ref == "HEAD" or ref.startswith("refs/"):
            refspecs.append(f"+{ref}:{space}/ref")
        self._fetch(repo, refspecs, what=f"fetch of {ref!r}")
        candidates = ([f"{space}/ref"] if ref == "HEAD" or ref.startswith("refs/") else
                      [f"{space}/heads/{ref}", f"{space}/tags/{ref}"])
        if _HEX.fullmatch(ref):
            candidates.append(ref)
        for candidate in candidates:
            try:
                head = repo.commit(candidate)
            except (git.BadName, git.BadObject, ValueError):
                continue
            return Revision(
                sha=head.hexsha, url=self.display_url, branch=ref,
                subject=head.summary if isinstance(head.summary, str) else head.summary.decode(),
                committed_at=head.committed_datetime.astimezone(datetime.UTC).isoformat(),
                previous=None,
            )
        raise errors.SourceError(
            f"{self.display_url} has no branch, tag or commit {ref!r} (fetched its branches "
            "and tags; name another ref with refs/..., e.g. refs/pull/42/head)")

    def commit(self, sha: str) -> git.Commit:
        """The commit object of a fetched revision."""
        return self._repo().commit(sha)

    def verify(self, sha: str, *, trust: signatures.Trust, site: str | None,
               base: str | None, where: str) -> None:
        """SignatureError unless `sha` and the commits that changed `site`'s files since
        `base` (the last fetched head; None or not an ancestor: a first fetch) are signed
        by a trusted key (`signatures.require_history`; without a site, the head only)."""
        repo = self._repo()
        git_dir = Path(str(repo.git_dir))
        if site is None:
            signatures.require(git_dir=git_dir, commit=sha, trust=trust, where=where)
            return
        if base is not None and not _descends(repo, ancestor=base, head=sha):
            base = None
        signatures.require_history(git_dir=git_dir, head=sha, base=base, site=site,
                                   trust=trust, where=where)


def git_environment(repo: git.Repo, *, url: str | None = None,
                    access: Access | None = None) -> dict[str, str]:
    """The environment for a git command that reaches `url`: fetch here, and publish's push.

    Both run unattended, so git must fail, not prompt, for a password or a host key:
    terminal prompts are off, and an askpass program answers nothing, unless the user
    configured one (GIT_ASKPASS, core.askPass, SSH_ASKPASS: how CI hands over a token).

    ssh: with `--ssh-key-file` or `--known-hosts-file`, ssh runs with that key only and
    that known_hosts file as the one source of trusted host keys. Without them the user's
    ssh command (GIT_SSH_COMMAND, core.sshCommand, GIT_SSH, in git's order) is kept as it
    is; only when none is set does our own run. Ours is always in batch mode with strict
    host key checking (an unknown host is refused, never trusted on first use) and gives up
    on a server silent for `Access.stall` seconds.

    Configuration goes in GIT_CONFIG_COUNT/KEY/VALUE (after any the user set): git's own
    stall limit for http (http.lowSpeedLimit/Time), and with `--git-credentials-file` a
    credential helper (`githelper`) that answers for `url`'s host only, replacing any the
    user configured. Neither carries a secret: the helper reads the file when git asks.
    The variables returned are added to this process's environment for the one command.
    """
    access = access or Access()
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if not os.environ.get("GIT_ASKPASS") and not _config(repo, "core.askPass"):
        env["GIT_ASKPASS"] = "true"
    if not os.environ.get("SSH_ASKPASS"):
        env["SSH_ASKPASS"] = "true"
    ours = access.ssh_key_file is not None or access.known_hosts_file is not None
    users = not ours and bool(os.environ.get("GIT_SSH_COMMAND")
                              or _config(repo, "core.sshCommand") or os.environ.get("GIT_SSH"))
    if not users:
        env["GIT_SSH_COMMAND"] = ssh_command(access)
    config = [("http.lowSpeedLimit", "1"), ("http.lowSpeedTime", str(access.stall))]
    endpoint = _http_endpoint(url) if url is not None else None
    if access.credentials_file is not None and endpoint is not None:
        helper = shlex.join([sys.executable or "python3", "-I", "-S", str(_HELPER),
                             "credential", str(_absolute(access.credentials_file)),
                             *endpoint])
        config += [("credential.helper", ""),  # an empty value drops the user's helpers
                   ("credential.helper", f"!{helper}")]
    env.update(_config_variables(config))
    return env


def ssh_command(access: Access) -> str:
    """The ssh command git runs when the user's own is not kept (see `git_environment`)."""
    words = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
             "-o", f"ConnectTimeout={access.stall}",
             "-o", f"ServerAliveInterval={max(1, access.stall // 3)}",
             "-o", "ServerAliveCountMax=3"]
    if access.known_hosts_file is not None:
        words += ["-o", f"UserKnownHostsFile={_absolute(access.known_hosts_file)}",
                  "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no"]
    if access.ssh_key_file is not None:
        words += ["-i", str(_absolute(access.ssh_key_file)), "-o", "IdentitiesOnly=yes"]
    return shlex.join(words)


def _config_variables(entries: Sequence[tuple[str, str]]) -> dict[str, str]:
    """`entries` as git's GIT_CONFIG_COUNT/KEY_n/VALUE_n, numbered after the user's own."""
    try:
        first = int(os.environ.get("GIT_CONFIG_COUNT") or 0)
    except ValueError:
        first = 0  # git refuses the user's bad count itself, naming it
    env = {"GIT_CONFIG_COUNT": str(first + len(entries))}
    for index, (key, value) in enumerate(entries, start=first):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def _http_endpoint(url: str) -> tuple[str, str] | None:
    """(protocol, host[:port]) of an http(s) URL as git's credential protocol names them."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return parts.scheme.lower(), parts.netloc.rpartition("@")[2]


def _absolute(path: Path) -> Path:
    """`path` made absolute without resolving links (git runs helpers in another folder;
    a Secret's files are links that kubelet swaps on rotation)."""
    return Path(os.path.abspath(path))


def run_remote(git_args: Sequence[str], *, cwd: Path, env: Mapping[str, str],
               timeout: float) -> GitRun:
    """Run `git <git_args>` against a remote, bounded by `timeout` seconds, and never leave it
    behind: git runs under `githelper`'s supervisor, in a process group of its own that is
    killed whole (SIGKILL) at the timeout, when this call is interrupted, and when the
    reconciler dies. stdin is closed, git's messages are in English (LC_ALL=C)."""
    command = [sys.executable or "python3", "-I", "-S", str(_HELPER), "supervise",
               str(os.getpid()), "--", "git", *git_args]
    proc = subprocess.Popen(command, cwd=cwd, env={**os.environ, "LC_ALL": "C",
                                                    "LANGUAGE": "C", **env},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, process_group=0)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(proc)
        try:
            out, err = proc.communicate(timeout=_REAP_SECONDS)
        except subprocess.TimeoutExpired:  # something left the group and holds a pipe
            out, err = b"", b""
        return GitRun(status=None, stdout=_text(out), stderr=_text(err))
    except BaseException:
        _end_group(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_REAP_SECONDS)
        raise
    return GitRun(status=proc.returncode, stdout=_text(out), stderr=_text(err))


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    # The supervisor is not reaped yet, so its pid still names its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")


def describe_failure(stderr: str, *, status: object, url: str, access: Access) -> str:
    """Why a remote git command failed, in one line for an error: `clean_git_error()`,
    and for ssh's host key refusal which host, which known_hosts file, and what to do."""
    detail = clean_git_error(stderr, status=status)
    # ssh says why only in words (its exit status is 255 for every failure).
    if "Host key verification failed" not in stderr:
        return detail
    host, port = _ssh_host(url)
    named = f"[{host}]:{port}" if port else host
    where = (f"the known_hosts file {access.known_hosts_file}"
             if access.known_hosts_file is not None else "ssh's known_hosts files")
    scan = f"ssh-keyscan{f' -p {port}' if port else ''} {host}"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        problem = (f"ssh refused host {named}: its host key differs from the one in {where} "
                   "(a changed key or a man in the middle); if the server's key really "
                   f"changed, replace its line after checking the new fingerprint ({scan})")
    else:
        problem = (f"ssh refused host {named}: its host key is not in {where}, and an "
                   f"unknown host is never trusted on first use; add its key after checking "
                   f"its fingerprint ({scan} >> known_hosts)")
    return f"{problem}; ssh said: {detail}"


def _ssh_host(url: str) -> tuple[str, int | None]:
    """The host and port an ssh URL (`ssh://...` or scp-like `user@host:path`) names."""
    if "://" in url:
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        return parts.hostname or url, port
    match = _SCP_LIKE.match(url)
    return (match.group("host"), None) if match else (url, None)


def _config(repo: git.Repo, key: str) -> str:
    """`key` as git itself resolves it for `repo`: every level, GIT_CONFIG_GLOBAL,
    GIT_CONFIG_COUNT and includes. (GitPython's `config_reader()` does read the system and
    global files too, but ignores GIT_CONFIG_GLOBAL, GIT_CONFIG_NOSYSTEM and the
    GIT_CONFIG_* variables, so it can miss what git would use.)"""
    try:
        value: str = repo.git.config("--get", key)
    except git.GitCommandError:
        return ""  # exit 1: not set anywhere
    return value.strip()


def _objects_as_stored(repo: git.Repo) -> git.Repo:
    """`repo` with replace refs and grafts off for every git command it runs, GitPython's
    `cat-file` that reads the site's files included: a `refs/replace/` entry or an
    `info/grafts` line in the cache would show other content, or other parents to the
    history guard, than the fetched (and signature-checked) commits. The cache holds
    only what fetch brought, so neither is ever legitimate there."""
    repo.git.update_environment(GIT_NO_REPLACE_OBJECTS="1", GIT_GRAFT_FILE=os.devnull)
    return repo


def _descends(repo: git.Repo, *, ancestor: str, head: str) -> bool:
    try:
        repo.git.merge_base("--is-ancestor", ancestor, head)
    except git.GitCommandError:
        # Exit 1: not an ancestor. Any other failure (an unknown object, because the old
        # head is no longer reachable from anything fetched) means the same here.
        return False
    return True


def clean_git_error(stderr: str | bytes | None, *, status: object = None) -> str:
    """git's stderr in one line for an error message, with credentials in URLs redacted.

    `stderr` is git's own, or a GitCommandError's `stderr` (which GitPython wraps as
    `\\n  stderr: '...'`). Kept: the lines up to the last `fatal:` or `error:` one (what
    ssh or a hook said, then git's verdict), without git's advice after it; all lines when
    there is no verdict. Used by fetch here and by publish's push.
    """
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr or ""
    text = text.strip()
    if text.startswith("stderr: '") and text.endswith("'"):
        text = text.removeprefix("stderr: '").removesuffix("'")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith("hint:")]
    verdicts = [i for i, line in enumerate(lines) if line.startswith(("fatal:", "error:"))]
    if verdicts:
        end = verdicts[-1] + 1
        # A verdict ending in `:` goes on in the next line (connect.c: `unable to connect
        # to HOST:` then `HOST[0: IP]: errno=Connection refused`): keep that reason.
        while end < len(lines) and lines[end - 1].endswith(":"):
            end += 1
        lines = lines[:end]
    text = "; ".join(lines) or f"git exited with {status}"
    text = _URL.sub(lambda match: redact_url(match.group(0)), text)
    # A token in a URL can still come back from git in another spelling: remove userinfo.
    return _USERINFO.sub(r"\1***@", text)
