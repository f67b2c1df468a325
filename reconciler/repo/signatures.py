"""Check that fetched commits are signed by a trusted key (--verify-signatures). Called by
source (sync, run) and plan.

The trusted set is an OpenPGP keyring (`--trusted-keys`: armored or binary public keys)
and/or an SSH allowed-signers file (`--allowed-signers`, git's `gpg.ssh.allowedSignersFile`
format). Git itself checks each signature (`git log --format=%G?...`, then `git
verify-commit` with `gpg.minTrustLevel=fully` for a good one), in an environment this
module builds: a private GNUPGHOME made for the one check (the keyring imported into it,
each key trusted fully, removed afterwards; never the user's ~/.gnupg), and git's
configuration given on its command line with the user's system and global files, GIT_*
variables, replace refs and grafts left out, so nothing the user configured decides the
answer. The files are read on every check, so a rotated keyring or signers file is used
on the next pass.

Which commits (`require_history`, docs/git.md "Signed intents"): the head, and every
commit that changed what the site reads (`sites/<site>/` and `crds/`):
* after the last fetched head (`base`): each commit of `base..head` that changes those
  files, a non-merge against its parent, a merge against every parent (content of its
  own: a conflict resolution or two sides combined); and the head's files must come from
  `base` through commits that leave them as a trusted parent had them, or through a
  signed commit. A merge that takes the site's files as one trusted parent has them (a
  forge's merge of signed commits) needs no signature; one that takes them from a commit
  the site never accepted (an old side branch a merge once dropped) does.
* on a first fetch (no `base`, or history rewritten with --allow-history-rewrite), git's
  history of those files from the head back (`git log -- paths`, streamed) until each
  file the head has was last changed by a checked commit, or a merge was reached that
  combines changes (it must be signed, and vouches for the files as it has them). Older
  commits are not read, so a long history costs no more than its recent part.
A signed commit for another site does not vouch for this site's files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from reconciler import errors
from reconciler.repo import githelper

TIMEOUT = 60.0  # seconds one local gpg or git command of a check may take
_FIELDS = "%G?%x00%GK%x00%GF%x00%GP"  # verdict, key id, fingerprint, primary fingerprint
# A key id or fingerprint as shown in a message: hex (OpenPGP) or SHA256:base64 (ssh).
# Anything else in git's answer is dropped, so a crafted signature cannot forge a log line.
_KEY_TEXT = re.compile(r"[^0-9A-Za-z:+/=]")
_DIE_WITH_PARENT = githelper.death_signal(signal.SIGKILL)
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_GPG_CONF = "no-autostart\nno-auto-key-retrieve\nno-auto-key-locate\n"


class Verdict(enum.StrEnum):
    """What git found on a commit; only GOOD lets it through."""

    GOOD = "good"  # a valid signature by a trusted key
    UNSIGNED = "unsigned"
    UNTRUSTED = "untrusted"  # a valid signature, or one that cannot be checked, by a key
    # outside the trusted set
    BAD = "bad"  # the signature does not verify: the commit changed after signing, or forged
    EXPIRED = "expired"  # the signature or its key has expired
    REVOKED = "revoked"  # the key was revoked


# git's %G? letters (git-log(1), "Placeholders that expand to information extracted from
# the commit"): G good and valid, U good but of unknown validity (an ssh key outside the
# allowed signers), X good but expired, Y good by an expired key, R by a revoked key,
# E cannot be checked (the key is not in the keyring), B bad, N none.
_VERDICTS = {"G": Verdict.GOOD, "U": Verdict.UNTRUSTED, "E": Verdict.UNTRUSTED,
             "X": Verdict.EXPIRED, "Y": Verdict.EXPIRED, "R": Verdict.REVOKED,
             "B": Verdict.BAD, "N": Verdict.UNSIGNED}


@dataclasses.dataclass(frozen=True)
class Trust:
    """The trusted keys: the CLI's --trusted-keys and --allowed-signers (paths only, read
    on each check)."""

    keyring: Path | None = None  # OpenPGP public keys, armored or binary (gpg --export)
    allowed_signers: Path | None = None  # ssh: `principal [options] keytype key` lines

    def describe(self) -> str:
        """The flags that name the trusted set, for messages."""
        named = [f"--trusted-keys {self.keyring}" if self.keyring else "",
                 f"--allowed-signers {self.allowed_signers}" if self.allowed_signers else ""]
        return " and ".join(n for n in named if n) or "no key source"


@dataclasses.dataclass(frozen=True)
class Signature:
    """The verdict on one commit's signature."""

    commit: str
    verdict: Verdict
    key: str = ""  # the signing key's fingerprint (or id, when git gives only that)

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.GOOD

    def reason(self) -> str:
        """Why the commit is refused (or that it is not), in a few words."""
        by = f" {self.key}" if self.key else ""
        return {
            Verdict.GOOD: f"signed by trusted key{by}",
            Verdict.UNSIGNED: "unsigned",
            Verdict.UNTRUSTED: f"signed by untrusted key{by}",
            Verdict.BAD: f"bad signature{f' (claims key{by})' if by else ''}: the commit "
                         "does not match its signature (altered after signing, or forged)",
            Verdict.EXPIRED: f"signed by key{by}, but the signature or the key has expired",
            Verdict.REVOKED: f"signed by revoked key{by}",
        }[self.verdict]


def check(*, trust: Trust, verify: bool) -> None:
    """Raise UsageError, naming the flag and the file, when --verify-signatures has no
    usable key source, or a key source is given without it: a file missing, unreadable,
    empty, holding no public key (a keyring) or no signer (an allowed-signers file), or
    the program that checks it (gpg, ssh-keygen) not installed."""
    sources = trust.keyring is not None or trust.allowed_signers is not None
    if not verify:
        if sources:
            raise errors.UsageError(
                f"{trust.describe()} given without --verify-signatures: pass "
                "--verify-signatures to refuse commits not signed by these keys")
        return
    if not sources:
        raise errors.UsageError(
            "--verify-signatures needs the trusted keys: --trusted-keys FILE (OpenPGP public "
            "keys, e.g. from gpg --export --armor KEYID) and/or --allowed-signers FILE (ssh, "
            "git's gpg.ssh.allowedSignersFile format)")
    try:
        if trust.keyring is not None:
            _program("gpg", flag="--trusted-keys")
            with _home() as home:
                _import(keyring=trust.keyring, home=home)
        if trust.allowed_signers is not None:
            _program("ssh-keygen", flag="--allowed-signers")
            _signers(trust.allowed_signers)
    except _KeysError as exc:
        raise errors.UsageError(str(exc)) from None


def verify(*, git_dir: Path, commit: str, trust: Trust) -> Signature:
    """The verdict on `commit`'s signature against `trust`, as git gives it.

    Raises SignatureError when the check itself cannot run (a key file became unreadable
    or empty, gpg failed, git timed out): the commit is then not let through either.
    """
    return _verdicts(git_dir=git_dir, commits=[commit], trust=trust)[commit]


def require(*, git_dir: Path, commit: str, trust: Trust, where: str) -> Signature:
    """`verify()`, raising SignatureError (not retryable) unless the commit is GOOD; the
    message names the commit, `where` it was found, the reason and the trusted set."""
    found = verify(git_dir=git_dir, commit=commit, trust=trust)
    if not found.ok:
        raise errors.SignatureError(_refusal(f"commit {commit[:12]} at the head of {where} "
                                             f"refused: {found.reason()}", trust))
    return found


def require_history(*, git_dir: Path, head: str, base: str | None, site: str,
                    trust: Trust, where: str) -> tuple[Signature, ...]:
    """Check the head and the commits that changed what `site` reads (module docstring):
    after `base` (the last fetched head, an ancestor of `head`), or on a first fetch when
    `base` is None. SignatureError (not retryable) names the commit refused, that it
    changed the site's files (one of them, when git names it), the reason and the trusted
    set; the verdicts checked when nothing is refused."""
    paths = (f"{_SITES}/{site}", _CRDS)
    if base is not None and base != head:
        return _since(git_dir=git_dir, head=head, base=base, site=site, paths=paths,
                      trust=trust, where=where)
    if base is None:
        return _first(git_dir=git_dir, head=head, site=site, paths=paths, trust=trust,
                      where=where)
    return (require(git_dir=git_dir, commit=head, trust=trust, where=where),)


def _since(*, git_dir: Path, head: str, base: str, site: str, paths: Sequence[str],
           trust: Trust, where: str) -> tuple[Signature, ...]:
    """`require_history()` after `base`: every commit of base..head that changes the
    site's files is signed, and the head's files come from `base` through trusted ones."""
    order = _rev_list(git_dir, base=base, head=head)  # parents before children
    parents = dict(order)
    known = {sha for sha, _ in order}
    files = _digests(git_dir, {base, *known, *(p for _, ps in order for p in ps)}, paths)
    # Commits that change the site's files themselves: a non-merge against its parent (a
    # root against nothing), a merge against every parent.
    changing = [sha for sha, ps in order
                if (not ps and files[sha] != _NOTHING)
                or (ps and all(files[p] != files[sha] for p in ps))]
    found = _verdicts(git_dir=git_dir, commits=list(dict.fromkeys([head, *changing])),
                      trust=trust)
    _require_head(found, head=head, where=where, trust=trust)
    bad = [sha for sha in changing if not found[sha].ok]
    if bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more such commit(s) after it)" if len(bad) > 1 else ""
        named = _changed_file(git_dir, first, parents[first], paths)
        raise errors.SignatureError(_refusal(
            f"commit {first[:12]} under the head {head[:12]} of {where} refused: "
            f"{found[first].reason()}; it changes {named}, which site {site} reads{more}",
            trust))
    trusted = {base}
    for sha, ps in order:
        if any(p in trusted and files[p] == files[sha] for p in ps):
            trusted.add(sha)  # the site's files as a trusted parent had them
            continue
        if sha in changing:
            trusted.add(sha)  # signed (checked above): it made them
            continue
        if len(ps) == 1:
            continue  # a non-merge that left them as an untrusted parent had them
        if sha not in found:
            found.update(_verdicts(git_dir=git_dir, commits=[sha], trust=trust))
        if found[sha].ok:
            trusted.add(sha)  # a signed merge vouches for the files it chose
    if head not in trusted:
        culprit = head  # where the untrusted files enter: follow untrusted equal parents
        while True:
            same = [p for p in parents[culprit]
                    if p in known and p not in trusted and files[p] == files[culprit]]
            if not same:
                break
            culprit = same[0]
        if culprit not in found:
            found.update(_verdicts(git_dir=git_dir, commits=[culprit], trust=trust))
        source = next((p for p in parents[culprit] if files[p] == files[culprit]), "")
        came = f" from commit {source[:12]}," if source else ""
        raise errors.SignatureError(_refusal(
            f"commit {culprit[:12]} under the head {head[:12]} of {where} refused: it takes "
            f"the files site {site} reads{came} which the site never accepted and no commit "
            f"signed by a trusted key made, and it is {found[culprit].reason()}", trust))
    return tuple(found[sha] for sha in dict.fromkeys([head, *changing]))


def _first(*, git_dir: Path, head: str, site: str, paths: Sequence[str], trust: Trust,
           where: str) -> tuple[Signature, ...]:
    """`require_history()` with no base: the head, and the commits that last changed each
    file the head has under `paths` (git's history of them, newest first)."""
    wanted = set(_ls_files(git_dir, head, paths))
    last: dict[str, str] = {}  # commit -> a file it was the last change of
    for sha, merge, names in _log(git_dir, head, paths) if wanted else ():
        covered = wanted & set(names)
        if merge or covered:
            last.setdefault(sha, "" if merge else sorted(covered)[0])
        wanted -= covered
        if merge:
            wanted.clear()  # a signed merge vouches for the files as it has them
        if not wanted:
            break
    found = _verdicts(git_dir=git_dir, commits=list(dict.fromkeys([head, *last])),
                      trust=trust)
    _require_head(found, head=head, where=where, trust=trust)
    for sha, named in last.items():
        if found[sha].ok:
            continue
        what = (f"it is the last change of {_quote(named)}" if named else
                "it is a merge that combines changes to the files")
        raise errors.SignatureError(_refusal(
            f"commit {sha[:12]} under the head {head[:12]} of {where} refused: "
            f"{found[sha].reason()}; {what} site {site} reads (first fetch: each file's "
            "last change is checked)", trust))
    return tuple(found[sha] for sha in dict.fromkeys([head, *last]))


def _require_head(found: Mapping[str, Signature], *, head: str, where: str,
                  trust: Trust) -> None:
    """SignatureError unless the head's own signature is good."""
    if not found[head].ok:
        raise errors.SignatureError(_refusal(
            f"commit {head[:12]} at the head of {where} refused: {found[head].reason()}",
            trust))


def _refusal(what: str, trust: Trust) -> str:
    return (f"{what} (--verify-signatures trusts {trust.describe()}); nothing of it is "
            "applied, the intent in force stays, and a later commit signed by a trusted "
            "key is accepted once no unsigned change to the site's files is under it")


def _verdicts(*, git_dir: Path, commits: Sequence[str], trust: Trust) -> dict[str, Signature]:
    """The verdict on each of `commits` (one private GNUPGHOME, one `git log` for all)."""
    with _home() as home:
        try:
            signers = home / "allowed_signers"
            # Without --allowed-signers, an empty file: every ssh signature is untrusted.
            wanted = b"" if trust.allowed_signers is None else _signers(trust.allowed_signers)
            try:
                signers.write_bytes(wanted)
            except OSError as exc:
                raise _KeysError(f"cannot write {signers}: {exc.strerror}") from exc
            if trust.keyring is not None:
                _import(keyring=trust.keyring, home=home)
            config = _config(signers=signers)
        except _KeysError as exc:
            raise errors.SignatureError(
                f"commit {commits[0][:12]} cannot be checked: {exc}; refused") from None
        env = _environment(home)
        answer = _git(git_dir, config, ["log", "--no-walk=unsorted", "--no-show-signature",
                                        f"--format=%H%x00{_FIELDS}%x01", "--stdin"],
                      env=env, data="".join(f"{sha}\n" for sha in commits).encode())
        if answer.returncode != 0:
            raise errors.SignatureError(
                f"commit {commits[0][:12]} cannot be checked: git log failed: "
                f"{_one_line(answer.stderr)}; refused")
        found: dict[str, Signature] = {}
        for record in answer.stdout.split("\x01"):
            fields = record.lstrip("\n").split("\0")
            if len(fields) < 2:
                continue
            sha, letter, key_id, fingerprint, primary = (*fields, "", "", "", "")[:5]
            key = _KEY_TEXT.sub("", primary or fingerprint or key_id)[:100]
            found[sha] = Signature(commit=sha, verdict=_VERDICTS.get(letter, Verdict.BAD),
                                   key=key)
        missing = [sha for sha in commits if sha not in found]
        if missing:
            raise errors.SignatureError(
                f"commit {missing[0][:12]} cannot be checked: git log did not show it; refused")
        good = [sha for sha in dict.fromkeys(commits) if found[sha].ok]
        # git's own verdict at the trust level we require: `G` alone does not say it for
        # every version and signature format. One command for all; one each if it fails.
        strict = (*config, ("gpg.minTrustLevel", "fully"))
        if good and _git(git_dir, strict, ["verify-commit", *good], env=env).returncode:
            for sha in good:
                if _git(git_dir, strict, ["verify-commit", sha], env=env).returncode:
                    found[sha] = dataclasses.replace(found[sha], verdict=Verdict.UNTRUSTED)
        return found


_SITES, _CRDS = "sites", "crds"  # contract.SITES_DIR, contract.CRDS_DIR (no import cycle)
_NOTHING: tuple[str, ...] = ()  # the digest of a commit without the site's files (see below)


def _local(git_dir: Path, git_args: Sequence[str], *, data: bytes | None = None,
           what: str) -> str:
    """A local read of the repository for the history walk; SignatureError when it fails."""
    answer = _git(git_dir, (), ["--literal-pathspecs", *git_args], env=_environment(None),
                  data=data)
    if answer.returncode != 0:
        raise errors.SignatureError(f"signature check cannot read {what}: git "
                                    f"{git_args[0]} failed: {_one_line(answer.stderr)}; refused")
    return answer.stdout


def _rev_list(git_dir: Path, *, base: str, head: str) -> list[tuple[str, tuple[str, ...]]]:
    """The commits of base..head with their parents, parents first."""
    text = _local(git_dir, ["rev-list", "--topo-order", "--reverse", "--parents", head,
                           f"^{base}", "--"], what=f"the commits after {base[:12]}")
    rows = [line.split() for line in text.splitlines() if line.strip()]
    return [(row[0], tuple(row[1:])) for row in rows]


def _digests(git_dir: Path, commits: set[str],
             paths: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Per commit, the object ids of `paths` there (`_NOTHING` when none exists): equal
    digests, equal files."""
    ordered = sorted(commits)
    asked = "".join(f"{sha}:{path}\n" for sha in ordered for path in paths).encode()
    lines = _local(git_dir, ["cat-file", "--batch-check=%(objectname)"], data=asked,
                  what="the site's files").splitlines()
    if len(lines) != len(ordered) * len(paths):
        raise errors.SignatureError("signature check cannot read the site's files: git "
                                    "cat-file answered short; refused")
    result: dict[str, tuple[str, ...]] = {}
    for index, sha in enumerate(ordered):
        ids = tuple(line if _OBJECT_ID.fullmatch(line) else "-"
                    for line in lines[index * len(paths):(index + 1) * len(paths)])
        result[sha] = _NOTHING if all(i == "-" for i in ids) else ids
    return result


def _changed_file(git_dir: Path, sha: str, parents: Sequence[str],
                  paths: Sequence[str]) -> str:
    """One file `sha` changes under `paths` (against its first parent), for a message."""
    against = list(parents[:1]) if parents else ["--root"]
    text = _local(git_dir, ["diff-tree", "-r", "-z", "--no-commit-id", "--name-only",
                           "--no-renames", *against, sha, "--", *paths],
                 what=f"the files commit {sha[:12]} changes")
    names = [name for name in text.split("\0") if name.strip()]
    return _quote(names[0]) if names else f"{' and '.join(p + '/' for p in paths)}"


def _ls_files(git_dir: Path, head: str, paths: Sequence[str]) -> list[str]:
    text = _local(git_dir, ["ls-tree", "-r", "-z", "--name-only", head, "--", *paths],
                 what=f"the files of commit {head[:12]}")
    return [name for name in text.split("\0") if name]


def _log(git_dir: Path, head: str,
         paths: Sequence[str]) -> Iterator[tuple[str, bool, tuple[str, ...]]]:
    """git's history of `paths` from `head`, newest first, streamed: (commit, is a merge
    that changes them, the files it changes). The reader stops it when done."""
    command = ["git", "--git-dir", str(git_dir), "--literal-pathspecs", "-c",
               "log.showSignature=false", "log", "--format=%x01%H%x00%P", "--name-only",
               "-z", "--no-renames", head, "--", *paths]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=_environment(None),
                               preexec_fn=_DIE_WITH_PARENT)
    timer = threading.Timer(TIMEOUT, process.kill)
    timer.start()
    assert process.stdout is not None
    try:
        pending = b""
        while True:
            chunk = os.read(process.stdout.fileno(), 65536)
            pending += chunk
            records = pending.split(b"\x01")
            pending = records.pop() if chunk else b""
            for record in records if chunk else [*records, pending]:
                fields = [f for f in record.decode("utf-8", "replace").split("\0")]
                if not fields or not fields[0].strip():
                    continue
                sha = fields[0].strip()
                parents = fields[1].split() if len(fields) > 1 else []
                names = tuple(f.lstrip("\n") for f in fields[2:] if f.strip())
                yield sha, len(parents) > 1, names
            if not chunk:
                break
    finally:
        process.kill()
        process.wait()
        expired = not timer.is_alive()
        timer.cancel()
        process.stdout.close()
    if expired:
        raise errors.SignatureError(f"signature check timed out after {TIMEOUT:g}s reading "
                                    "the history of the site's files; refused")
    if process.returncode not in (0, -signal.SIGKILL):
        raise errors.SignatureError(f"signature check cannot read the history of the "
                                    f"site's files: git log exited {process.returncode}; "
                                    "refused")


def _quote(name: str) -> str:
    """A file name for a message: no control characters, so it cannot forge a log line."""
    return "".join(c if c.isprintable() else "?" for c in name)[:200]


class _KeysError(Exception):
    """A key file cannot serve; the message names the flag and the file."""


@contextlib.contextmanager
def _home() -> Iterator[Path]:
    """A private GNUPGHOME (mode 0700) for one check, removed afterwards. gpg is told not to
    start an agent or fetch keys, so nothing outlives the check."""
    try:
        made = tempfile.TemporaryDirectory(prefix="reconciler-gnupg-")
    except OSError as exc:
        raise errors.SignatureError(
            f"signature check cannot make its private GNUPGHOME in {tempfile.gettempdir()}: "
            f"{exc.strerror}; refused, and a later pass tries again") from exc
    with made as name:
        home = Path(name)
        try:
            (home / "gpg.conf").write_text(_GPG_CONF, encoding="utf-8")
        except OSError as exc:
            raise errors.SignatureError(
                f"signature check cannot write to its private GNUPGHOME {home}: "
                f"{exc.strerror}; refused, and a later pass tries again") from exc
        yield home


def _program(name: str, *, flag: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise _KeysError(f"{flag} needs {name}, which is not installed (not on PATH)")
    return found


def _read(path: Path, *, flag: str) -> bytes:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise _KeysError(f"{flag} {path}: not a file") from None
    except OSError as exc:
        raise _KeysError(f"{flag} {path}: cannot read it: {exc.strerror}") from None
    if not data.strip():
        raise _KeysError(f"{flag} {path}: the file is empty")
    return data


def _import(*, keyring: Path, home: Path) -> tuple[str, ...]:
    """Import the public keys of `keyring` into `home` and trust each fully (ownertrust
    ultimate: being in the file is what makes a key trusted); their fingerprints."""
    data = _read(keyring, flag="--trusted-keys")
    gpg = _program("gpg", flag="--trusted-keys")
    base = [gpg, "--batch", "--no-tty", "--homedir", str(home), "--status-fd", "1"]
    imported = _run([*base, "--import-options", "import-minimal", "--import"], data=data,
                    env=_environment(home))
    fingerprints = tuple(dict.fromkeys(
        fields[3] for fields in (line.split() for line in imported.stdout.splitlines())
        if len(fields) >= 4 and fields[:2] == ["[GNUPG:]", "IMPORT_OK"]))  # reason, fpr
    if not fingerprints:
        said = _one_line(imported.stderr)
        raise _KeysError(
            f"--trusted-keys {keyring}: holds no OpenPGP public key (export one with gpg "
            f"--export --armor KEYID){f'; gpg said: {said}' if said else ''}")
    owners = "".join(f"{fpr}:6:\n" for fpr in fingerprints).encode()
    trusted = _run([*base, "--import-ownertrust"], data=owners, env=_environment(home))
    if trusted.returncode != 0:
        raise _KeysError(f"--trusted-keys {keyring}: gpg could not trust its keys: "
                         f"{_one_line(trusted.stderr)}")
    return fingerprints


def _signers(path: Path) -> bytes:
    """The allowed-signers file's bytes, refused when no line names a signer."""
    data = _read(path, flag="--allowed-signers")
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    if not any(line and not line.startswith("#") for line in lines):
        raise _KeysError(f"--allowed-signers {path}: names no signer (only comments and "
                         "blank lines; each line is `principal [options] keytype key`)")
    return data


def _config(*, signers: Path) -> tuple[tuple[str, str], ...]:
    """git's settings for a check: our programs and our allowed signers, whatever the user
    or the repository configured."""
    gpg = shutil.which("gpg") or "gpg"
    ssh_keygen = shutil.which("ssh-keygen") or "ssh-keygen"
    return (("gpg.program", gpg), ("gpg.openpgp.program", gpg),
            ("gpg.ssh.program", ssh_keygen), ("gpg.ssh.allowedSignersFile", str(signers)),
            ("log.showSignature", "false"))


def _environment(home: Path | None) -> dict[str, str]:
    """This process's environment without git's settings and the user's GNUPGHOME: git
    reads no system or global file, replaces no object, reads no graft, and gpg uses
    `home` alone (None: git runs no gpg)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("GIT_") and name not in ("GNUPGHOME", "GPG_AGENT_INFO")}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_NO_REPLACE_OBJECTS": "1", "GIT_GRAFT_FILE": os.devnull,
                "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"})
    if home is not None:
        env["GNUPGHOME"] = str(home)
    return env


def _git(git_dir: Path, config: Sequence[tuple[str, str]], git_args: Sequence[str], *,
         env: Mapping[str, str], data: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`git -c key=value... --git-dir git_dir <git_args>`, local, bounded (`_run`)."""
    settings = [word for key, value in config for word in ("-c", f"{key}={value}")]
    return _run(["git", *settings, "--git-dir", str(git_dir), *git_args], data=data, env=env)


def _run(command: Sequence[str], *, data: bytes | None,
         env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a local command with a bound; its output as text. SignatureError at the bound."""
    try:
        done = subprocess.run(list(command), input=data, capture_output=True, env=dict(env),
                              timeout=TIMEOUT, check=False, preexec_fn=_DIE_WITH_PARENT)
    except subprocess.TimeoutExpired:
        raise errors.SignatureError(
            f"signature check timed out after {TIMEOUT:g}s ({Path(command[0]).name}); "
            "refused, and a later pass tries again") from None
    except OSError as exc:
        raise errors.SignatureError(
            f"signature check could not run {Path(command[0]).name}: {exc.strerror}") from exc
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"))


def _one_line(text: str) -> str:
    """A program's message in one line, without control characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = "; ".join(lines)[:300]
    return "".join(c if c.isprintable() else "?" for c in joined)
