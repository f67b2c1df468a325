"""Fetching a branch into the local cache, guarding its history, and keeping secrets out."""

from __future__ import annotations

import datetime
from pathlib import Path, PurePosixPath

import pytest

from reconciler import errors
from reconciler.repo import source, tree
from tests import gitrepo


@pytest.fixture
def remote(tmp_path: Path) -> gitrepo.GitRemote:
    """A bare remote with one pushed commit on `main`."""
    repo = gitrepo.GitRemote(tmp_path / "remote")
    repo.write("sites/edge-a/intent.yaml", "kind: Intent\n")
    repo.commit_and_push("Add edge-a\n\nThe first site.")
    return repo


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def head_of(remote: gitrepo.GitRemote) -> str:
    return gitrepo.git("rev-parse", f"refs/heads/{remote.branch}", cwd=remote.bare)


# --- fetching ---------------------------------------------------------------------------


def test_first_fetch_returns_the_head_and_its_subject(
    remote: gitrepo.GitRemote, cache_dir: Path
) -> None:
    """The first fetch of a file:// remote returns its head SHA, subject and commit time."""
    src = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    before = datetime.datetime.now(datetime.UTC)
    revision = src.fetch(last_head=None)
    assert revision.sha == head_of(remote)
    assert revision.subject == "Add edge-a"
    assert revision.branch == "main"
    assert revision.url == remote.url
    assert revision.previous is None
    committed = datetime.datetime.fromisoformat(revision.committed_at)
    assert committed.utcoffset() == datetime.timedelta(0)
    assert abs(committed - before) < datetime.timedelta(minutes=5)


def test_plain_path_is_fetched_like_a_url(remote: gitrepo.GitRemote, cache_dir: Path) -> None:
    """A filesystem path to the repository works without `file://`."""
    src = source.Source(url=str(remote.bare), branch="main", cache_dir=cache_dir)
    assert src.fetch(last_head=None).sha == head_of(remote)
    assert src.url == str(remote.bare.resolve())


def test_next_fetch_returns_the_new_head_and_the_previous_one(
    remote: gitrepo.GitRemote, cache_dir: Path
) -> None:
    """After a new commit is pushed, a fetch returns it, recording the head before."""
    src = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    first = src.fetch(last_head=None)
    remote.write("sites/edge-a/manifests/a.yaml", "kind: ConfigMap\n")
    new_sha = remote.commit_and_push("Add a manifest")
    second = src.fetch(last_head=first.sha)
    assert second.sha == new_sha != first.sha
    assert second.subject == "Add a manifest"
    assert second.previous == first.sha


def test_fetch_of_an_unchanged_head_returns_it_again(
    remote: gitrepo.GitRemote, cache_dir: Path
) -> None:
    """Fetching when nothing changed returns the same head, which is not a rewrite."""
    src = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    first = src.fetch(last_head=None)
    assert src.fetch(last_head=first.sha).sha == first.sha


def test_fetched_commit_is_readable_as_a_tree(
    remote: gitrepo.GitRemote, cache_dir: Path
) -> None:
    """commit(sha) of a fetched revision gives the files committed at it."""
    src = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    revision = src.fetch(last_head=None)
    view = tree.GitTree(src.commit(revision.sha))
    assert view.read(PurePosixPath("sites/edge-a/intent.yaml"), max_bytes=100) == (
        b"kind: Intent\n"
    )


def test_cache_survives_a_new_source_object(remote: gitrepo.GitRemote, cache_dir: Path) -> None:
    """A new Source on the same cache dir reuses the cached repository and its objects."""
    first = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    sha = first.fetch(last_head=None).sha
    again = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    assert again.cache_path == first.cache_path
    assert again.cache_path.is_dir()
    assert again.commit(sha).hexsha == sha  # there before any fetch by `again`
    remote.write("x.yaml", "x: 1\n")
    new_sha = remote.commit_and_push("Another")
    assert again.fetch(last_head=sha).sha == new_sha
    assert sorted(p.name for p in cache_dir.iterdir()) == [  # and its guard (cache.held)
        first.cache_path.name, f"{first.cache_path.name}.guard"]


def test_each_url_gets_its_own_cache(cache_dir: Path) -> None:
    """Two repositories fetched into one cache dir do not share a cached repository."""
    one = source.Source(url="file:///srv/one.git", branch="main", cache_dir=cache_dir)
    two = source.Source(url="file:///srv/two.git", branch="main", cache_dir=cache_dir)
    assert one.cache_path != two.cache_path
    assert one.cache_path.parent == two.cache_path.parent == cache_dir


# --- the history guard ------------------------------------------------------------------


def force_push_rewrite(remote: gitrepo.GitRemote, *, onto: str) -> str:
    """Reset to `onto`, commit something else and force-push it: a rewritten branch."""
    remote.reset_hard(onto)
    remote.write("sites/edge-a/other.yaml", "rewritten: true\n")
    sha = remote.commit("Rewritten")
    remote.push(force=True)
    return sha


def test_force_pushed_rewrite_is_refused_naming_both_heads(
    remote: gitrepo.GitRemote, cache_dir: Path
) -> None:
    """A new head that does not descend from the last fetched one is a HistoryRewriteError."""
    base = head_of(remote)
    remote.write("sites/edge-a/manifests/a.yaml", "kind: ConfigMap\n")
    remote.commit_and_push("Second")
    src = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    last = src.fetch(last_head=None).sha
    rewritten = force_push_rewrite(remote, onto=base)
    with pytest.raises(errors.HistoryRewriteError) as caught:
        src.fetch(last_head=last)
    message = str(caught.value)
    assert f"new head {rewritten[:12]} does not descend from the last fetched head {last[:12]}" \
        in message
    assert rewritten not in message and last not in message  # 12-character prefixes only
    assert "--allow-history-rewrite" in message
    assert caught.value.retryable is False
    assert isinstance(caught.value, errors.SourceError)


def test_rewrite_is_accepted_when_allowed(remote: gitrepo.GitRemote, cache_dir: Path) -> None:
    """With allow_history_rewrite the rewritten head is returned, recording the old one."""
    base = head_of(remote)
    remote.write("a.yaml", "a: 1\n")
    remote.commit_and_push("Second")
    src = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    last = src.fetch(last_head=None).sha
    rewritten = force_push_rewrite(remote, onto=base)
    revision = src.fetch(last_head=last, allow_history_rewrite=True)
    assert revision.sha == rewritten
    assert revision.previous == last


def test_rewind_to_an_older_commit_is_a_rewrite(
    remote: gitrepo.GitRemote, cache_dir: Path
) -> None:
    """Moving the branch back to an ancestor of the last head is refused too."""
    base = head_of(remote)
    remote.write("a.yaml", "a: 1\n")
    remote.commit_and_push("Second")
    src = source.Source(url=remote.url, branch="main", cache_dir=cache_dir)
    last = src.fetch(last_head=None).sha
    remote.reset_hard(base)
    remote.push(force=True)
    with pytest.raises(errors.HistoryRewriteError, match=f"new head {base[:12]} "):
        src.fetch(last_head=last)


# --- failures ---------------------------------------------------------------------------


def test_missing_branch_is_a_retryable_source_error(
    remote: gitrepo.GitRemote, cache_dir: Path
) -> None:
    """Fetching a branch the remote does not have says which branch, from where, and why."""
    src = source.Source(url=remote.url, branch="nope", cache_dir=cache_dir)
    with pytest.raises(errors.SourceError) as caught:
        src.fetch(last_head=None)
    assert str(caught.value) == (
        f"fetch of branch 'nope' from {remote.url} failed: "
        "fatal: couldn't find remote ref refs/heads/nope"
    )
    assert caught.value.retryable is True


def test_missing_repository_is_a_retryable_source_error(tmp_path: Path, cache_dir: Path) -> None:
    """Fetching from a path with no repository is a SourceError saying so."""
    url = f"file://{tmp_path}/missing.git"
    src = source.Source(url=url, branch="main", cache_dir=cache_dir)
    with pytest.raises(errors.SourceError) as caught:
        src.fetch(last_head=None)
    assert str(caught.value).startswith(f"fetch of branch 'main' from {url} failed: fatal: ")
    assert caught.value.retryable is True
    assert type(caught.value) is errors.SourceError


def test_missing_repository_error_gives_the_cause(tmp_path: Path, cache_dir: Path) -> None:
    """The error for a missing repository says it is not a repository, not just 'cannot read'."""
    src = source.Source(url=f"file://{tmp_path}/missing.git", branch="main", cache_dir=cache_dir)
    with pytest.raises(errors.SourceError, match="does not appear to be a git repository"):
        src.fetch(last_head=None)


@pytest.mark.parametrize("url", [
    "http://user:s3cret@127.0.0.1:1/x.git",
    "https://s3cret@git.example.com/fleet.git",
    "ssh://git:s3cret@git.example.com/fleet.git",
])
def test_a_url_with_credentials_is_refused_without_showing_them(
        url: str, cache_dir: Path) -> None:
    """A URL carrying a password or token is refused before git runs, naming the credentials
    file (or an ssh key) to use instead, and the secret is in no part of the error."""
    with pytest.raises(errors.UsageError) as caught:
        source.Source(url=url, branch="main", cache_dir=cache_dir)
    error = caught.value
    assert "carries credentials" in str(error)
    flag = "--ssh-key-file" if url.startswith("ssh") else "--git-credentials-file"
    assert flag in str(error)
    assert "s3cret" not in str(error) and "s3cret" not in repr(error)
    assert error.__cause__ is None
    assert not cache_dir.exists()  # refused before anything was written


def test_git_errors_keep_what_ssh_said_and_drop_gits_advice() -> None:
    """git's stderr becomes one line: what came before git's verdict, the verdict, no advice."""
    stderr = ("ssh: connect to host fleet.example port 22: Connection refused\r\n"
              "fatal: Could not read from remote repository.\n\n"
              "Please make sure you have the correct access rights\nand the repository exists.\n")
    assert source.clean_git_error(stderr) == (
        "ssh: connect to host fleet.example port 22: Connection refused; "
        "fatal: Could not read from remote repository.")
    rejected = ("error: failed to push some refs to '/srv/fleet.git'\n"
                "hint: Updates were rejected because the remote contains work that you do\n")
    assert source.clean_git_error(rejected) == "error: failed to push some refs to '/srv/fleet.git'"


def test_git_errors_read_gitpythons_wrapping_and_say_the_exit_code_when_silent() -> None:
    """A GitCommandError's labelled stderr is unwrapped; no stderr at all names the exit code."""
    assert source.clean_git_error("\n  stderr: 'fatal: couldn't find remote ref x'") == (
        "fatal: couldn't find remote ref x")
    assert source.clean_git_error(b"", status=128) == "git exited with 128"
    assert source.clean_git_error(None, status=1) == "git exited with 1"


@pytest.mark.parametrize("url", [
    "https://user:s3cret@host/o/r.git/", "https://ghp_s3cret@host/o/r.git",
    "http://oauth2:s3cret@[::1]:8080/r", "ssh://git:s3cret@host/r.git"])
def test_git_errors_never_show_credentials_in_any_url(url: str) -> None:
    """A password or token in any URL git prints is redacted, whatever the URL's spelling."""
    cleaned = source.clean_git_error(f"fatal: unable to access '{url}': Could not resolve host")
    assert "s3cret" not in cleaned
    assert cleaned.startswith("fatal: unable to access '") and "***@" in cleaned


# --- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://user:secret@host/x", "https://user:***@host/x"),
        ("https://user:secret@host:8443/x.git", "https://user:***@host:8443/x.git"),
        ("https://ghp_secret@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("http://oauth2:secret@gitlab.example.com/o/r", "http://oauth2:***@gitlab.example.com/o/r"),
        ("ssh://git:secret@host/o/r.git", "ssh://git:***@host/o/r.git"),
    ],
)
def test_redact_url_hides_passwords_and_tokens(url: str, redacted: str) -> None:
    """Any password, or an https user that is really a token, becomes `***`."""
    assert source.redact_url(url) == redacted
    assert "secret" not in source.redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/o/r.git",
        "ssh://git@host/o/r.git",
        "git@github.com:o/r.git",
        "file:///srv/repo.git",
        "/srv/repo.git",
    ],
)
def test_redact_url_leaves_urls_without_secrets_alone(url: str) -> None:
    """URLs with no password (and ssh users, which are not secrets) are unchanged."""
    assert source.redact_url(url) == url


def test_redact_url_keeps_an_ipv6_host_valid() -> None:
    """An IPv6 host keeps its brackets, so the redacted URL still parses to the same host."""
    redacted = source.redact_url("https://u:secret@[::1]:8080/x")
    assert redacted == "https://u:***@[::1]:8080/x"


def test_redact_url_does_not_crash_on_a_malformed_port() -> None:
    """A URL with a bad port is still redacted rather than raising."""
    assert "secret" not in source.redact_url("https://user:secret@host:bad/x")


def test_normalize_url_makes_plain_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path becomes absolute; URLs and scp-like addresses pass unchanged."""
    monkeypatch.chdir(tmp_path)
    assert source.normalize_url("repo.git") == str(tmp_path.resolve() / "repo.git")
    assert source.normalize_url("https://host/r.git") == "https://host/r.git"
    assert source.normalize_url("git@github.com:o/r.git") == "git@github.com:o/r.git"
