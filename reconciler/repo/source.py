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
            with repo.git.custom_environment(**_non_interactive()):
                repo.git.fetch("--no-tags", "--prune", self.url, refspec)
        except git.GitCommandError as exc:
            detail = _clean_git_error(exc, self.url, self.display_url)
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
            with repo.git.custom_environment(**_non_interactive()):
                repo.git.fetch("--no-tags", "--prune", self.url, *refspecs)
        except git.GitCommandError as exc:
            detail = _clean_git_error(exc, self.url, self.display_url)
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


def _non_interactive() -> dict[str, str]:
    """A reconciler runs unattended: git must fail, not prompt for a password or host key."""
    return {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
        "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
    }


def _descends(repo: git.Repo, *, ancestor: str, head: str) -> bool:
    try:
        repo.git.merge_base("--is-ancestor", ancestor, head)
    except git.GitCommandError:
        # Exit 1: not an ancestor. Any other failure (an unknown object, because the old
        # head is no longer reachable from anything fetched) means the same here.
        return False
    return True


def _clean_git_error(exc: git.GitCommandError, url: str, display: str) -> str:
    """The useful line of git's stderr, with the URL's secrets redacted."""
    stderr = str(exc.stderr or "").replace(url, display).strip()
    stderr = re.sub(r"stderr:\s*", "", stderr).strip().strip("'").strip()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("fatal:")]
    text = "; ".join(fatal) if fatal else (lines or [f"git exited with {exc.status}"])[-1]
    # A token in a URL can still come back from git in another spelling: remove userinfo.
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", text)
