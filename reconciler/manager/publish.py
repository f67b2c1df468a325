"""`reconciler intent publish`: the manager's commit point. Called by cli._cmd_intent().

One straight pipeline, each step refusing before anything is written:
open the work tree -> refuse a dirty tree -> pick the id and sequence (never one the site
had before) -> stamp every manifest of the site (stamp.stamp_file) -> write intent.yaml
(stamp.set_values) and check it against the intent schema -> check the push target ->
write the files, commit only sites/<site>/ with `Intent-Id:` and `Site:` trailers,
optionally signed -> push when asked.

A failed commit (a signing error, a hook) restores the files and the index as they were:
nothing is half-published. A rejected push keeps the local commit and says what to do.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import git
from ruamel import yaml as ruamel_yaml
from ruamel.yaml import error as yaml_error

from reconciler import contract, durations, errors
from reconciler.manager import stamp, validate
from reconciler.repo import bundle, documents, guard, schemas, source
from reconciler.repo import tree as trees

log = logging.getLogger("reconciler")

_MAX_DIRTY_SHOWN = 10
_MAX_INTENT_HISTORY = 1000  # earlier versions of intent.yaml read for superseded ids
_ID_SUFFIX_BYTES = 3  # six hex digits


class PublishError(errors.ReconcilerError):
    """Publishing failed; the message says whether anything was committed."""


class PushError(PublishError):
    """The commit was made but the push failed or was rejected; the commit stays local."""

    retryable = True

    def __init__(self, message: str, *, published: Published) -> None:
        super().__init__(message)
        self.published = published


@dataclasses.dataclass(frozen=True)
class Options:
    """What `reconciler intent publish` was asked to do."""

    repo: Path
    site: str
    message: str
    intent_id: str | None = None  # None: generate one
    sequence: int | None = None  # None: one higher than the current
    description: str | None = None  # None: the message's first line
    sign: bool = False
    push: bool = False
    remote: str | None = None  # None: the branch's upstream, else origin
    allow_dirty: bool = False
    dry_run: bool = False
    # What sync reads: --max-file-size and --max-site-size, refused before anything is written.
    limits: bundle.Limits = dataclasses.field(default_factory=bundle.Limits)
    # How the push reaches the remote: credentials file, ssh key, known_hosts, timeout.
    access: source.Access = dataclasses.field(default_factory=source.Access)


@dataclasses.dataclass(frozen=True)
class FileChange:
    """One file of the site as publishing changes it."""

    path: str  # repository-relative, POSIX
    before: bytes | None  # None: the file is new
    after: bytes
    documents: tuple[stamp.DocumentStamp, ...] = ()  # manifests only


@dataclasses.dataclass(frozen=True)
class PushTarget:
    """Where the commit goes: a remote, its redacted URL, the branch ref there."""

    remote: str
    url: str  # never carries a password or token
    ref: str


@dataclasses.dataclass(frozen=True)
class Published:
    """The outcome of one publish, for the text and JSON reports."""

    site: str
    intent_id: str
    sequence: int
    description: str
    previous_id: str | None
    previous_sequence: int | None
    message: str  # the full commit message, trailers included
    changes: tuple[FileChange, ...]
    documents_unchanged: int  # documents that already carried the id
    dry_run: bool = False
    commit: str | None = None
    signed: bool = False
    pushed: PushTarget | None = None

    @property
    def files_stamped(self) -> int:
        return sum(1 for c in self.changes if c.documents)

    @property
    def documents_stamped(self) -> int:
        return sum(1 for c in self.changes for d in c.documents if d.changed)

    def diff(self) -> str:
        """The unified diff of every changed file, as `git diff` would show it."""
        return "".join(_unified_diff(change) for change in self.changes)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _token() -> str:
    return secrets.token_hex(_ID_SUFFIX_BYTES)


def generate_id(*, site: str, clock: Callable[[], datetime.datetime] = _utcnow,
                token: Callable[[], str] = _token) -> str:
    """`<site>-<YYYYMMDD>-<6 hex>`, the site part cut so the id fits the 63-character limit."""
    tail = f"-{clock():%Y%m%d}-{token()}"
    candidate = site[: 63 - len(tail)].rstrip("-.") + tail
    candidate = re.sub(r"[^A-Za-z0-9._-]", "-", candidate)[:63]
    assert contract.INTENT_ID_PATTERN.match(candidate), candidate
    return candidate


# --- the command --------------------------------------------------------------------------


def publish(*, options: Options,
            clock: Callable[[], datetime.datetime] = _utcnow,  # injected by tests
            token: Callable[[], str] = _token) -> Published:  # injected by tests
    """Stamp, write, commit (and sign and push) one new intent of one site.

    Raises UsageError for a wrong request (bad id, sequence, site, dirty tree) and
    PublishError (or PushError, after the commit) for a failure.
    """
    site = options.site
    bundle.check_site_name(site)
    if not options.message.strip():
        raise errors.UsageError("the commit message (-m) is empty")
    if options.sequence is not None and options.sequence < 0:
        raise errors.UsageError(f"--sequence must be 0 or more, not {options.sequence}")
    if options.intent_id is not None and not contract.INTENT_ID_PATTERN.match(options.intent_id):
        raise errors.UsageError(f"invalid intent id {options.intent_id!r}: use "
                                f"[A-Za-z0-9._-]{{1,63}}")

    # Open the work tree and find the site.
    repo = _open(options.repo)
    root = Path(str(repo.working_tree_dir))
    site_dir = contract.site_dir(site)
    if not (root / site_dir).is_dir():
        raise bundle.missing_site(trees.DirTree(root), site, where=str(root),
                                  kind=errors.UsageError)

    # Everything publish writes must be a regular file inside the work tree.
    for written in (contract.SITES_DIR, site_dir, contract.intent_path(site),
                    contract.manifests_dir(site)):
        if (root / written).is_symlink():
            raise errors.UsageError(
                f"{written}: a symlink; sites refuse symlinks, and publish writes only regular "
                "files inside the repository")

    # A dirty tree is refused before anything is written.
    dirty = _dirty_paths(repo)
    if dirty and not options.allow_dirty:
        shown = "\n  ".join(dirty[:_MAX_DIRTY_SHOWN])
        more = f"\n  ... and {len(dirty) - _MAX_DIRTY_SHOWN} more" \
            if len(dirty) > _MAX_DIRTY_SHOWN else ""
        raise errors.UsageError(
            f"the work tree of {root} has uncommitted changes:\n  {shown}{more}\ncommit or "
            f"stash them, or pass --allow-dirty to publish with the pending edits in "
            f"{site_dir}/ (changes elsewhere stay out of the commit)")

    # The id and sequence: new to the site, and higher than the current sequence.
    intent_path = contract.intent_path(site)
    committed = _intent_at(repo, rev="HEAD", path=intent_path)
    working_bytes = (root / intent_path).read_bytes() if (root / intent_path).is_file() else None
    working = _intent_fields(working_bytes, file=str(intent_path)) if working_bytes else {}
    current_id = committed.get("id")
    sequences = [s for s in (committed.get("sequence"), working.get("sequence"))
                 if isinstance(s, int) and not isinstance(s, bool)]
    current_sequence = max(sequences) if sequences else None
    earlier = _earlier_ids(repo, site=site, path=intent_path)
    intent_id = options.intent_id or generate_id(site=site, clock=clock, token=token)
    if intent_id == current_id:
        raise errors.UsageError(
            f"intent id {intent_id!r} is already {site}'s current intent: a site keeps it and "
            f"rolls nothing out anew; publish a new id")
    if intent_id in earlier:
        raise errors.UsageError(
            f"intent id {intent_id!r} was published for {site} before (commit "
            f"{earlier[intent_id][:12]}); sites refuse a superseded id: a rollback needs a "
            f"new id")
    if options.sequence is not None:
        if current_sequence is not None and options.sequence <= current_sequence:
            raise errors.UsageError(
                f"--sequence {options.sequence} is not higher than {site}'s current sequence "
                f"{current_sequence}; sites refuse a lower or equal one: use "
                f"{current_sequence + 1} or more, or leave --sequence out")
        sequence = options.sequence
    else:
        sequence = current_sequence + 1 if current_sequence is not None else 1
    description = options.description if options.description is not None \
        else next(line.strip() for line in options.message.splitlines() if line.strip())

    # Stamp every manifest, then write intent.yaml: all in memory so far.
    changes: list[FileChange] = []
    unchanged = 0
    budget = bundle.SiteBudget(site=site, limits=options.limits)
    work_tree = trees.DirTree(root)
    unstampable: dict[str, str] = {}  # file -> why it cannot be stamped
    for path in _manifest_files(repo, root=root, site=site):
        data = budget.read(work_tree, PurePosixPath(path))
        try:
            result = stamp.stamp_file(data, file=path, intent_id=intent_id)
        except stamp.StampError as exc:
            unstampable[path] = str(exc)
            continue
        unchanged += sum(1 for d in result.documents if not d.changed)
        if result.changed:
            changes.append(FileChange(path=path, before=data, after=result.data,
                                      documents=result.documents))
    if unstampable:
        # Say all that is wrong at once: the files that cannot be stamped, and what the
        # site would refuse in the others.
        others = [f.one_line() for f in _site_refusals(root=root, site=site,
                                                       limits=options.limits)
                  if f.location.file not in unstampable]
        raise PublishError(
            f"cannot publish {site}: {len(unstampable)} file(s) cannot be stamped"
            + "".join(f"\n  {why}" for why in unstampable.values())
            + (f"\nand the site would refuse the revision for ({len(others)} finding(s)):"
               + "".join(f"\n  {line}" for line in others) if others else "")
            + "\nnothing was written")
    intent_after = _write_intent(working_bytes, site=site, intent_id=intent_id,
                                 sequence=sequence, description=description)
    changes.append(FileChange(path=str(intent_path), before=working_bytes, after=intent_after))
    message = (f"{options.message.strip()}\n\n{contract.TRAILER_INTENT_ID}: {intent_id}\n"
               f"{contract.TRAILER_SITE}: {site}\n")
    target = (_push_target(repo, remote=options.remote, access=options.access)
              if options.push else None)
    published = Published(site=site, intent_id=intent_id, sequence=sequence,
                          description=description, previous_id=current_id,
                          previous_sequence=current_sequence, message=message,
                          changes=tuple(changes), documents_unchanged=unchanged,
                          dry_run=options.dry_run)
    log.info("%s: intent %s (sequence %d): %d manifest files to stamp, %d documents already "
             "carry the id", site, intent_id, sequence, published.files_stamped, unchanged)
    if options.dry_run:
        return published

    # Write, check the revision as the site will read it, and commit; a refusal or a
    # failed commit puts everything back.
    sha = _commit(repo, root=root, site_dir=site_dir, changes=changes, message=message,
                  sign=options.sign,
                  check=functools.partial(_check_as_the_site, root=root, site=site,
                                          limits=options.limits))
    headers = _git(repo, "cat_file", "commit", sha, what="reading the commit").split("\n\n")[0]
    signed = any(line.startswith("gpgsig") for line in headers.splitlines())
    published = dataclasses.replace(published, commit=sha, signed=signed)
    log.info("%s: committed %s%s", site, sha[:12], " (signed)" if signed else "")
    if target is not None:
        _push(repo, target=target, published=published, access=options.access)
        published = dataclasses.replace(published, pushed=target)
        log.info("%s: pushed to %s (%s) %s", site, target.remote, target.url, target.ref)
    return published


# --- Git ----------------------------------------------------------------------------------


def _open(path: Path) -> git.Repo:
    try:
        repo = source.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise errors.UsageError(f"{path}: not a Git work tree (--repo names the checkout "
                                f"of the fleet repository)") from exc
    if repo.bare or repo.working_tree_dir is None:
        raise errors.UsageError(f"{path}: a bare repository; publish needs a work tree")
    return repo


def _git(repo: git.Repo, command: str, *args: str, what: str, **kwargs: Any) -> str:
    """Run `git <command>`; a failure becomes a PublishError naming what was being done."""
    try:
        output: str = getattr(repo.git, command)(*args, **kwargs)
    except git.GitCommandError as exc:
        # The commands run here (status, log, add, commit, ...) never name a remote's URL:
        # the cause carries no credential.
        detail = source.clean_git_error(exc.stderr, status=exc.status)
        raise PublishError(f"{what} failed: {detail}") from exc
    return output


def _dirty_paths(repo: git.Repo) -> list[str]:
    """Staged, unstaged and untracked (not ignored) paths, as `git status` shows them."""
    output = _git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=normal",
                  what="git status")
    entries = output.split("\0")
    found: list[str] = []
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        found.append(f"{entry[:2]} {entry[3:]}")
        if entry[0] in "RC":
            index += 1  # the rename's source path follows
    return found


def _head_valid(repo: git.Repo) -> bool:
    try:
        repo.head.commit  # noqa: B018 - resolving it is the check
    except ValueError:
        return False
    return True


def _intent_at(repo: git.Repo, *, rev: str, path: PurePosixPath) -> dict[str, Any]:
    """`spec` of intent.yaml at `rev`; empty when the file or the revision is missing."""
    if not _head_valid(repo):
        return {}
    try:
        blob = repo.commit(rev).tree / str(path)
    except (KeyError, ValueError, git.BadName):
        return {}
    return _intent_fields(blob.data_stream.read(), file=f"{rev}:{path}")


def _intent_fields(data: bytes, *, file: str) -> dict[str, Any]:
    try:
        guard.check_depth(data, file=file, max_depth=bundle.Limits().max_depth)  # C parser
        doc = ruamel_yaml.YAML(typ="safe").load(data)
    except (errors.BundleError, yaml_error.YAMLError, TypeError, UnicodeDecodeError):
        log.debug("%s: unreadable; ignored for the id history", file)
        return {}
    spec = doc.get("spec") if isinstance(doc, Mapping) else None
    return dict(spec) if isinstance(spec, Mapping) else {}


def _earlier_ids(repo: git.Repo, *, site: str, path: PurePosixPath) -> dict[str, str]:
    """Every id the site had before -> a commit that carried it: the `Intent-Id:` trailers
    of commits with `Site: <site>`, and the ids of earlier versions of its intent.yaml."""
    if not _head_valid(repo):
        return {}
    found: dict[str, str] = {}
    fmt = (f"%H%x1f%(trailers:key={contract.TRAILER_INTENT_ID},valueonly,separator=%x1f)"
           f"%x1d%(trailers:key={contract.TRAILER_SITE},valueonly,separator=%x1f)%x1e")
    output = _git(repo, "log", f"--format={fmt}", "HEAD", what="reading the history")
    for record in output.split("\x1e"):
        if "\x1d" not in record:
            continue
        head, sites = record.strip("\n").split("\x1d", 1)
        sha, _, ids = head.partition("\x1f")
        if site in [s.strip(" \n") for s in sites.split("\x1f")]:
            for intent_id in ids.split("\x1f"):
                if intent_id.strip(" \n"):
                    found.setdefault(intent_id.strip(" \n"), sha)
    shas = _git(repo, "log", "--format=%H", f"--max-count={_MAX_INTENT_HISTORY}", "HEAD",
                "--", str(path), what="reading the history").split()
    for sha in shas:
        earlier_id = _intent_at(repo, rev=sha, path=path).get("id")
        if isinstance(earlier_id, str):
            found.setdefault(earlier_id, sha)
    return found


def _manifest_files(repo: git.Repo, *, root: Path, site: str) -> list[str]:
    """The site's manifest files that a commit would hold: tracked or untracked, not ignored."""
    folder = contract.manifests_dir(site)
    output = _git(repo, "ls_files", "-z", "--cached", "--others", "--exclude-standard", "--",
                  str(folder), what="listing the manifests")
    paths = sorted({p for p in output.split("\0")
                    if p and PurePosixPath(p).suffix in contract.MANIFEST_SUFFIXES})
    found = []
    for path in paths:
        full = root / path
        if full.is_symlink():
            raise errors.UsageError(f"{path}: a symlink; sites refuse symlinks, and publish "
                                    f"edits regular files only")
        if full.is_file():
            found.append(path)
    return found


def _write_intent(data: bytes | None, *, site: str, intent_id: str, sequence: int,
                  description: str) -> bytes:
    """intent.yaml with the new id, sequence and description, checked against its schema."""
    path = str(contract.intent_path(site))
    if data is None:
        text = (f"apiVersion: {contract.INTENT_API_VERSION}\nkind: {contract.INTENT_KIND}\n"
                f"metadata:\n  name: {site}\nspec:\n  id: {stamp.render(intent_id)}\n"
                f"  sequence: {sequence}\n  description: {stamp.render(description)}\n")
        after = text.encode("utf-8")
    else:
        after = stamp.set_values(data, file=path, values=[
            (("spec", "id"), intent_id), (("spec", "sequence"), sequence),
            (("spec", "description"), description)])
    doc = ruamel_yaml.YAML(typ="safe").load(after)
    findings = schemas.check_intent(doc, location=documents.Location(file=path, document=0, line=1),
                                     site=site)
    if findings:
        raise errors.ValidationError(
            f"{path}: the new intent would be invalid: " + "; ".join(f.short() for f in findings),
            findings=[str(f) for f in findings])
    return after


def _push_target(repo: git.Repo, *, remote: str | None, access: source.Access) -> PushTarget:
    """The remote and ref to push to, checked before anything is committed: a push URL
    that carries credentials, or an access file that cannot serve, is refused."""
    try:
        branch = repo.active_branch
    except TypeError as exc:
        raise errors.UsageError("HEAD is detached: check out the branch to publish on before "
                                "--push") from exc
    ref = f"refs/heads/{branch.name}"
    if remote is None:
        tracking = branch.tracking_branch()
        if tracking is not None:
            remote = tracking.remote_name
            reader = repo.config_reader()
            ref = str(reader.get_value(f'branch "{branch.name}"', "merge", ref))
        else:
            remote = "origin"
    names = [r.name for r in repo.remotes]
    if remote not in names:
        raise errors.UsageError(f"no remote named {remote!r} to push to (remotes: "
                                f"{', '.join(names) or 'none'}); pass --remote")
    url = source.redact_url(repo.remote(remote).url)
    for push_url in _push_urls(repo, remote=remote):
        source.check_url(push_url)
    access.check()
    return PushTarget(remote=remote, url=url, ref=ref)


def _push_urls(repo: git.Repo, *, remote: str) -> list[str]:
    """Where `git push <remote>` goes: its pushurls, else its url, rewritten as git does."""
    return _git(repo, "remote", "get-url", "--push", "--all", remote,
                what=f"reading remote {remote}'s push URL").splitlines()


def _site_refusals(*, root: Path, site: str, limits: bundle.Limits) -> list[schemas.Finding]:
    """What a site would refuse in the work tree as it is (validate.SITE_REFUSES)."""
    report = validate.run(options=validate.Options(root=root, sites=(site,), limits=limits))
    return [f for f in report.findings
            if f.severity is schemas.Severity.ERROR and f.rule in validate.SITE_REFUSES]


def _check_as_the_site(*, root: Path, site: str, limits: bundle.Limits) -> None:
    """Refuse a revision every site would refuse, naming all its findings at once, as
    `reconciler validate` prints them."""
    refused = _site_refusals(root=root, site=site, limits=limits)
    if refused:
        raise PublishError(
            f"site {site} would refuse this revision ({len(refused)} finding(s)):\n  "
            + "\n  ".join(f.one_line() for f in refused))


def _commit(repo: git.Repo, *, root: Path, site_dir: PurePosixPath,
            changes: Sequence[FileChange], message: str, sign: bool,
            check: Callable[[], None] = lambda: None) -> str:
    """Write the files, `check` them, and commit only `site_dir`; on failure put files and
    index back."""
    index_path = root / _git(repo, "rev_parse", "--git-path", "index", what="finding the index")
    backup_dir = Path(tempfile.mkdtemp(prefix="reconciler-publish-"))
    backup = backup_dir / "index"
    had_index = index_path.exists()
    if had_index:
        shutil.copy2(index_path, backup)
    written: list[FileChange] = []
    try:
        for change in changes:
            _write_file(root / change.path, change.after)
            written.append(change)
        check()
        _git(repo, "add", "--all", "--", str(site_dir), what=f"staging {site_dir}/")
        args = ["--only", "--cleanup=whitespace", "-m", message]
        if sign:
            args.insert(0, "--gpg-sign")
        what = "signing and committing" if sign else "committing"
        _git(repo, "commit", *args, "--", str(site_dir), what=what)
        return repo.head.commit.hexsha
    except BaseException as exc:
        for change in reversed(written):
            if change.before is None:
                (root / change.path).unlink(missing_ok=True)
            else:
                _write_file(root / change.path, change.before)
        if had_index:
            shutil.copy2(backup, index_path)
        else:
            index_path.unlink(missing_ok=True)
        if isinstance(exc, PublishError):
            hint = (" (check user.signingkey, gpg.format and that the key is usable: see "
                    "docs/manager.md)") if sign else ""
            raise PublishError(f"{exc}{hint}; nothing was committed, and the files and the "
                               f"index are as they were") from exc
        raise
    finally:
        shutil.rmtree(backup_dir, ignore_errors=True)


def _write_file(path: Path, data: bytes) -> None:
    """Replace a file's bytes in place, keeping its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@dataclasses.dataclass(frozen=True)
class _RefStatus:
    """One ref's line of `git push --porcelain`: `<flag>\\t<from>:<to>\\t<summary>`."""

    flag: str  # "!" rejected or failed; " ", "+", "*", "-", "=" done
    summary: str  # e.g. "[rejected] (fetch first)", "[remote rejected] (hook declined)"

    @property
    def rejected(self) -> bool:
        """Refused because the remote ref has commits we lack (non-fast-forward, fetch
        first, stale info): git's PushInfo.REJECTED, not a remote's refusal."""
        return self.flag == "!" and self.summary.startswith("[rejected]")


def _ref_status(porcelain: str, *, ref: str) -> _RefStatus | None:
    """The status of `ref` in `git push --porcelain` output (git's documented machine
    format, one tab-separated line per ref), or None when git printed none."""
    for line in porcelain.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[1].rpartition(":")[2] == ref:
            return _RefStatus(flag=fields[0], summary=fields[2])
    return None


def _push(repo: git.Repo, *, target: PushTarget, published: Published,
          access: source.Access) -> None:
    sha = published.commit or "HEAD"
    retry = f"git push {target.remote} HEAD:{target.ref}"
    urls = _push_urls(repo, remote=target.remote)
    # As fetch runs: source's environment and run_remote() (a timeout, a process group
    # that dies with this one).
    done = source.run_remote(
        ["push", "--porcelain", target.remote, f"HEAD:{target.ref}"],
        cwd=Path(str(repo.working_tree_dir)),
        env=source.git_environment(repo, url=urls[0] if urls else None, access=access),
        timeout=access.timeout)
    if done.timed_out:
        raise PushError(
            f"push to {target.remote} ({target.url}) timed out after "
            f"{durations.format_seconds(access.timeout)} (--git-timeout): the remote did not "
            f"answer in time. The intent commit {sha[:12]} stays in the local branch: push "
            f"it with {retry}", published=published)
    status, out, err = done.status, done.stdout, done.stderr
    if status == 0:
        return
    ref_status = _ref_status(out, ref=target.ref)
    if ref_status is not None and ref_status.rejected:
        branch = target.ref.removeprefix("refs/heads/")
        raise PushError(
            f"push to {target.remote} ({target.url}) was rejected: {target.ref} there has "
            f"commits this branch lacks (non-fast-forward). The intent commit {sha[:12]} "
            f"stays in the local branch: fetch and rebase onto it (git pull --rebase "
            f"{target.remote} {branch}), check nobody published a newer intent for "
            f"{published.site} meanwhile, then push ({retry})",
            published=published)
    detail = source.describe_failure(err, status=status, url=urls[0] if urls else "",
                                     access=access).rstrip(".")
    if ref_status is not None and ref_status.flag == "!":
        detail = f"{ref_status.summary}; {detail}"  # e.g. [remote rejected] (hook declined)
    raise PushError(f"push to {target.remote} ({target.url}) failed: {detail}. The intent "
                    f"commit {sha[:12]} stays in the local branch: push it with {retry}",
                    published=published)


# --- reports --------------------------------------------------------------------------------


_SECRET = re.compile(rb"^kind:[ \t]*['\"]?Secret['\"]?[ \t]*(#.*)?\r?$", re.MULTILINE)


def _unified_diff(change: FileChange) -> str:
    """The file's diff; for a file holding a Secret, no context lines (they could hold its
    values): only the stamped lines, which never do."""
    before = change.before.decode("utf-8", "replace") if change.before is not None else ""
    after = change.after.decode("utf-8", "replace")
    secret = change.before is not None and bool(_SECRET.search(change.before))
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=f"a/{change.path}" if change.before is not None else "/dev/null",
        tofile=f"b/{change.path}", n=0 if secret else 3)
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
