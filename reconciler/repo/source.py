"""Fetch a branch into a local cache and guard its history. Called by reconcile.sync_once().

The cache is a bare repository per URL that survives restarts, so a fetch after the
first one only moves what changed. A revision is the commit SHA of the fetched head;
its files are read straight from Git's object store (see `tree`), never checked out.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import re
import urllib.parse
from pathlib import Path

import git

from reconciler import errors

_HEX = re.compile(r"[0-9a-fA-F]{7,40}")
_SCP_LIKE = re.compile(r"^(?P<user>[^@/]+@)?(?P<host>[^:/]+):(?P<path>.+)$")
# For redaction only, never to read structure from git's messages.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_USERINFO = re.compile(r"(://)[^/@\s]+@")


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


class Source:
    """One repository branch, fetched into `cache_dir`."""

    def __init__(self, *, url: str, branch: str, cache_dir: Path) -> None:
        self.url = normalize_url(url)
        self.branch = branch
        self.display_url = redact_url(self.url)
        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.cache_path = cache_dir / f"{key}.git"
        self._ref = f"refs/reconciler/heads/{branch}"

    def _repo(self) -> git.Repo:
        if (self.cache_path / "HEAD").exists():
            return git.Repo(self.cache_path)
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        return git.Repo.init(self.cache_path, bare=True)

    @property
    def repo(self) -> git.Repo:
        return self._repo()

    def fetch(self, *, last_head: str | None, allow_history_rewrite: bool = False) -> Revision:
        """Fetch the branch and return its head; refuse a head that rewrote history.

        Raises SourceError (retryable) when the fetch fails and HistoryRewriteError
        when the new head does not descend from `last_head`.
        """
        repo = self._repo()
        refspec = f"+refs/heads/{self.branch}:{self._ref}"
        try:
            with repo.git.custom_environment(**git_environment(repo)):
                repo.git.fetch("--no-tags", "--prune", self.url, refspec)
        except git.GitCommandError as exc:
            detail = clean_git_error(exc.stderr, status=exc.status)
            # from None: the cause would carry the command line, and with it the URL's
            # token (GitPython hides a password, not a token in the user part), and git's
            # raw stderr.
            raise errors.SourceError(
                f"fetch of branch {self.branch!r} from {self.display_url} failed: {detail}"
            ) from None
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
        try:
            with repo.git.custom_environment(**git_environment(repo)):
                repo.git.fetch("--no-tags", "--prune", self.url, *refspecs)
        except git.GitCommandError as exc:
            detail = clean_git_error(exc.stderr, status=exc.status)
            # from None: the cause would carry the command line with the URL's token, and
            # git's raw stderr.
            raise errors.SourceError(
                f"fetch of {ref!r} from {self.display_url} failed: {detail}") from None
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


def git_environment(repo: git.Repo) -> dict[str, str]:
    """The environment for a git command that reaches a remote: fetch here, and publish's push.

    Both run unattended, so git must fail, not prompt, for a password or a host key:
    terminal prompts are off, and an askpass program answers nothing, unless the user
    configured one (GIT_ASKPASS, core.askPass, SSH_ASKPASS: how CI hands over a token).
    The user's ssh command (GIT_SSH_COMMAND, core.sshCommand, GIT_SSH, in git's order) is
    kept as it is; only when none is set does ssh run with BatchMode. The variables
    returned are added to this process's environment for the one command.
    """
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if not os.environ.get("GIT_ASKPASS") and not _config(repo, "core.askPass"):
        env["GIT_ASKPASS"] = "true"
    if not os.environ.get("SSH_ASKPASS"):
        env["SSH_ASKPASS"] = "true"
    ssh_configured = (os.environ.get("GIT_SSH_COMMAND") or _config(repo, "core.sshCommand")
                      or os.environ.get("GIT_SSH"))
    if not ssh_configured:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return env


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
        lines = lines[: verdicts[-1] + 1]
    text = "; ".join(lines) or f"git exited with {status}"
    text = _URL.sub(lambda match: redact_url(match.group(0)), text)
    # A token in a URL can still come back from git in another spelling: remove userinfo.
    return _USERINFO.sub(r"\1***@", text)
