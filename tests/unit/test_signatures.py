"""Signed intents (--verify-signatures): real gpg and ssh-keygen keys, real signed commits
(made by tests/signing.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import cli, errors
from reconciler.repo import signatures, source
from reconciler.site import pipeline, state
from tests import gitrepo, signing, sites

Verdict = signatures.Verdict
MANAGER, INTRUDER, Signers = signing.MANAGER, signing.INTRUDER, signing.Signers


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signers]:
    made = Signers(tmp_path_factory.mktemp("signers"))
    yield made
    made.close()


@pytest.fixture
def work(tmp_path: Path, signers: Signers) -> Path:
    """A repository whose first commit is unsigned."""
    path = tmp_path / "work"
    path.mkdir()
    signers.git("init", "-q", "--initial-branch=main", ".", cwd=path)
    (path / "README").write_text("fleet\n")
    signers.commit(path, "first", key=None)
    return path


def verify(work: Path, commit: str, trust: signatures.Trust) -> signatures.Signature:
    return signatures.verify(git_dir=work / ".git", commit=commit, trust=trust)


# --- verdicts ----------------------------------------------------------------------------


def test_a_commit_signed_by_a_trusted_openpgp_key_is_good(signers: Signers, work: Path):
    """A commit signed by a key of the armored keyring is good, and names its fingerprint."""
    sha = signers.commit(work, "signed", key="gpg")
    found = verify(work, sha, signers.trust(ssh=False))
    assert found.verdict is Verdict.GOOD and found.ok
    assert found.key == signers.fingerprints[MANAGER]


def test_a_binary_keyring_serves_as_an_armored_one(signers: Signers, work: Path):
    """A keyring exported without --armor trusts the same key."""
    sha = signers.commit(work, "signed", key="gpg")
    assert verify(work, sha, signers.trust(ssh=False, binary=True)).ok


def test_a_commit_signed_by_a_trusted_ssh_key_is_good(signers: Signers, work: Path):
    """A commit signed by an ssh key of the allowed signers is good, and names its
    fingerprint."""
    sha = signers.commit(work, "signed", key="ssh")
    found = verify(work, sha, signers.trust(gpg=False))
    assert found.verdict is Verdict.GOOD
    assert found.key == signers.ssh_fingerprints[MANAGER]


def test_an_unsigned_commit_is_unsigned(signers: Signers, work: Path):
    """A commit without a signature is refused as unsigned."""
    sha = signers.commit(work, "plain", key=None)
    found = verify(work, sha, signers.trust())
    assert found.verdict is Verdict.UNSIGNED and not found.ok
    assert found.reason() == "unsigned"


@pytest.mark.parametrize("key", ["gpg:other", "ssh:other"])
def test_a_commit_signed_by_a_key_outside_the_trusted_set_is_untrusted(
        signers: Signers, work: Path, key: str):
    """A valid signature by a key in neither file is untrusted, and the reason names the key."""
    sha = signers.commit(work, "intruder", key=key)
    found = verify(work, sha, signers.trust())
    assert found.verdict is Verdict.UNTRUSTED
    expected = (signers.fingerprints[INTRUDER][-16:] if key.startswith("gpg")
                else signers.ssh_fingerprints[INTRUDER])
    assert found.key == expected
    assert found.reason() == f"signed by untrusted key {expected}"


@pytest.mark.parametrize(("key", "only"), [("gpg", "ssh"), ("ssh", "gpg")])
def test_a_trusted_key_of_one_kind_is_not_trusted_through_the_other(
        signers: Signers, work: Path, key: str, only: str):
    """The manager's gpg signature is untrusted when only allowed signers are given, and its
    ssh signature when only a keyring is."""
    sha = signers.commit(work, "signed", key=key)
    trust = signers.trust(gpg=only == "gpg", ssh=only == "ssh")
    assert verify(work, sha, trust).verdict is Verdict.UNTRUSTED


@pytest.mark.parametrize("key", ["gpg", "ssh"])
def test_a_signature_moved_onto_other_content_is_bad(signers: Signers, work: Path, key: str):
    """A trusted signature copied onto a commit of another tree does not verify: bad."""
    (work / "upf.yaml").write_text("image: upf:2.4\n")
    signed = signers.commit(work, "signed", key=key)
    (work / "upf.yaml").write_text("image: evil:latest\n")
    other = signers.commit(work, "evil", key=None)
    forged = signers.tamper(work, signed=signed, tree_of=other)
    found = verify(work, forged, signers.trust())
    assert found.verdict is Verdict.BAD
    assert found.reason().startswith("bad signature")


def test_the_users_git_config_and_gnupghome_do_not_decide(
        signers: Signers, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A user's global config that trusts the intruder's ssh key, GIT_CONFIG_* variables
    and a GNUPGHOME that holds (and ultimately trusts) the intruder's gpg key change nothing."""
    ssh_sha = signers.commit(work, "ssh intruder", key="ssh:other")
    gpg_sha = signers.commit(work, "gpg intruder", key="gpg:other")
    lenient = tmp_path / "lenient_signers"
    public = Path(f"{signers.ssh_keys[INTRUDER]}.pub").read_text().strip()
    lenient.write_text(f"{INTRUDER} {public}\n")
    config = tmp_path / "gitconfig"
    config.write_text(f"[gpg \"ssh\"]\n\tallowedSignersFile = {lenient}\n"
                      "[gpg]\n\tminTrustLevel = undefined\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "gpg.ssh.allowedSignersFile")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(lenient))
    monkeypatch.setenv("GNUPGHOME", str(signers.gnupghome))
    assert verify(work, ssh_sha, signers.trust()).verdict is Verdict.UNTRUSTED
    assert verify(work, gpg_sha, signers.trust()).verdict is Verdict.UNTRUSTED


def test_a_check_leaves_no_keyring_or_agent_behind(signers: Signers, work: Path,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    """The private GNUPGHOME of a check is removed when it ends, and no gpg-agent runs for it."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    sha = signers.commit(work, "signed", key="gpg")
    assert verify(work, sha, signers.trust()).ok
    assert list(scratch.iterdir()) == []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        assert str(scratch) not in text, text


def test_require_names_the_commit_the_reason_and_the_trusted_set(signers: Signers, work: Path):
    """A refused head raises SignatureError (not retryable) naming commit, reason and keys."""
    sha = signers.commit(work, "plain", key=None)
    with pytest.raises(errors.SignatureError) as caught:
        signatures.require(git_dir=work / ".git", commit=sha, trust=signers.trust(gpg=False),
                           where="branch 'main' of fleet")
    message = str(caught.value)
    assert message.startswith(f"commit {sha[:12]} at the head of branch 'main' of fleet "
                              "refused: unsigned")
    assert f"--allowed-signers {signers.allowed_signers}" in message
    assert not caught.value.retryable


def test_a_keyring_that_became_unreadable_refuses_the_commit(signers: Signers, work: Path,
                                                            tmp_path: Path):
    """A keyring emptied after start refuses even a signed commit: the check fails closed."""
    sha = signers.commit(work, "signed", key="gpg")
    emptied = tmp_path / "emptied.asc"
    emptied.write_text("")
    with pytest.raises(errors.SignatureError) as caught:
        verify(work, sha, signatures.Trust(keyring=emptied))
    assert f"--trusted-keys {emptied}: the file is empty; refused" in str(caught.value)


def test_a_check_that_cannot_make_its_keyring_refuses_the_commit(
        signers: Signers, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No room for the private GNUPGHOME (a missing temp dir) refuses a signed commit, naming
    the place: the check fails closed, never open."""
    sha = signers.commit(work, "signed", key="gpg")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(errors.SignatureError) as caught:
        verify(work, sha, signers.trust())
    assert f"cannot make its private GNUPGHOME in {tmp_path / 'missing'}" in str(caught.value)


# --- usage ------------------------------------------------------------------------------


def test_verify_without_a_key_source_is_a_usage_error():
    """--verify-signatures alone is refused: it names both key flags."""
    with pytest.raises(errors.UsageError, match=r"--trusted-keys FILE .* --allowed-signers FILE"):
        signatures.check(trust=signatures.Trust(), verify=True)


def test_a_key_source_without_verify_is_a_usage_error(signers: Signers):
    """Trusted keys given without --verify-signatures would protect nothing: refused."""
    with pytest.raises(errors.UsageError, match="without --verify-signatures"):
        signatures.check(trust=signers.trust(), verify=False)


@pytest.mark.parametrize(("flag", "content", "rule"), [
    ("--trusted-keys", None, "cannot read it: No such file or directory"),
    ("--trusted-keys", "", "the file is empty"),
    ("--trusted-keys", "not a key\n", "holds no OpenPGP public key"),
    ("--allowed-signers", None, "cannot read it: No such file or directory"),
    ("--allowed-signers", "\n", "the file is empty"),
    ("--allowed-signers", "# nobody yet\n\n", "names no signer"),
])
def test_an_unusable_key_file_is_a_usage_error_naming_it(tmp_path: Path, flag: str,
                                                         content: str | None, rule: str):
    """A missing, empty or keyless key file is refused at start, naming the flag and file."""
    path = tmp_path / "keys"
    if content is not None:
        path.write_text(content)
    trust = (signatures.Trust(keyring=path) if flag == "--trusted-keys"
             else signatures.Trust(allowed_signers=path))
    with pytest.raises(errors.UsageError) as caught:
        signatures.check(trust=trust, verify=True)
    assert str(caught.value).startswith(f"{flag} {path}: {rule}")


def test_the_cli_exits_2_for_verify_signatures_without_keys(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`reconciler sync --verify-signatures` without a key source exits 2 before any fetch."""
    code = cli.main(["sync", "--repo", str(tmp_path / "nowhere"), "--site", "edge-a",
                     "--state-dir", str(tmp_path / "state"), "--verify-signatures"])
    assert code == 2
    assert "--verify-signatures needs the trusted keys" in capsys.readouterr().err


def test_the_cli_exits_2_naming_an_empty_keyring(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]):
    """`reconciler run --trusted-keys EMPTY` exits 2 naming the file."""
    empty = tmp_path / "keys.asc"
    empty.write_text("")
    code = cli.main(["run", "--repo", str(tmp_path / "nowhere"), "--site", "edge-a",
                     "--state-dir", str(tmp_path / "state"), "--verify-signatures",
                     "--trusted-keys", str(empty)])
    assert code == 2
    assert f"--trusted-keys {empty}: the file is empty" in capsys.readouterr().err


# --- the fetch stage --------------------------------------------------------------------


def test_fetch_refuses_an_unsigned_head_and_names_it(signers: Signers, tmp_path: Path):
    """Source.fetch with a trusted set raises SignatureError for an unsigned head."""
    remote = gitrepo.GitRemote(tmp_path / "remote")
    remote.write("sites/edge-a/intent.yaml", "kind: Intent\n")
    sha = remote.commit_and_push("unsigned")
    src = source.Source(url=remote.url, branch="main", cache_dir=tmp_path / "cache")
    with pytest.raises(errors.SignatureError) as caught:
        src.fetch(last_head=None, trust=signers.trust())
    assert str(caught.value).startswith(f"commit {sha[:12]} at the head of branch 'main' of "
                                        f"{remote.url} refused: unsigned")
    assert src.fetch(last_head=None).sha == sha  # without a trusted set: not checked


@pytest.fixture
def env(tmp_path: Path, remote: gitrepo.GitRemote, signers: Signers) -> sites.Env:
    made = sites.Env(tmp_path, remote)
    made.options = pipeline.Options(url=remote.url, site=sites.SITE,
                                    cache_dir=tmp_path / "cache", trust=signers.trust())
    return made


def test_an_unsigned_head_is_refused_and_a_signed_one_then_accepted(
        signers: Signers, env: sites.Env):
    """An unsigned head: nothing applied, the error recorded at stage fetch naming the
    commit, the fetched head not moved; the same commit signed is then accepted."""
    unsigned = env.remote.commit_and_push("Baseline, unsigned")  # the fixture's is too
    result = env.sync()
    assert not result.ok
    assert f"commit {unsigned[:12]}" in result.message and "refused: unsigned" in result.message
    assert env.cluster.applied() == []
    recorded = env.store.load()
    assert recorded.accepted is None and recorded.last_fetched_head is None
    assert recorded.errors[-1].stage == "fetch"
    assert "refused: unsigned" in recorded.errors[-1].message
    signers.git("reset", "-q", "--hard", "HEAD~1", cwd=env.remote.work)
    signed = signers.sign_head(env.remote.work, key="gpg")
    env.remote.push(force=True)
    result = env.sync()
    assert result.ok, result.message
    assert result.commit == signed and env.cluster.applied()
    recorded = env.store.load()
    assert recorded.accepted is not None and recorded.accepted.commit == signed


@pytest.fixture
def signed(signers: Signers, env: sites.Env) -> sites.Env:
    """The sample site with its baseline commit signed by the manager's gpg key, synced."""
    signers.sign_head(env.remote.work, key="gpg")
    env.remote.push(force=True)
    result = env.sync()
    assert result.ok, result.message
    return env


def test_a_refused_head_keeps_the_intent_in_force(signers: Signers, signed: sites.Env):
    """After an accepted signed intent, an intruder's head is refused: the intent in force
    and the fetched head stay, and nothing more is written to the cluster."""
    env = signed
    baseline = env.store.load().last_fetched_head
    writes = len(env.cluster.calls)
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="sfo-evil", sequence=99)
    intruder = signers.commit(env.remote.work, "evil", key="gpg:other")
    env.remote.push()
    result = env.sync()
    assert not result.ok
    assert (f"signed by untrusted key {signers.fingerprints[INTRUDER][-16:]}"
            in result.message), result.message
    recorded = env.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == "sfo-baseline-1"
    assert recorded.last_fetched_head == baseline != intruder
    written = [c for c in env.cluster.calls[writes:]
               if c[0] in ("apply", "create", "update", "delete")]
    assert written == []
    assert state.Outcome.REFUSED not in [h.outcome for h in recorded.history]


# --- every commit that changes the site's files (issue #12 review G2) --------------------

OTHER = "edge-nyc-02"
INTENT = f"sites/{sites.SITE}/intent.yaml"


def refused(env: sites.Env) -> str:
    """The message of a pass that must be refused at fetch, nothing applied or accepted."""
    before = env.store.load()
    writes = len(env.cluster.calls)
    result = env.sync()
    assert not result.ok, result.message
    after = env.store.load()
    assert after.accepted == before.accepted
    assert after.last_fetched_head == before.last_fetched_head
    assert after.errors[-1].stage == "fetch"
    assert [c for c in env.cluster.calls[writes:]
            if c[0] in ("apply", "create", "update", "delete")] == []
    return result.message


def test_an_unsigned_commit_for_this_site_under_a_signed_head_for_another_is_refused(
        signers: Signers, signed: sites.Env):
    """An intruder's unsigned commit changes this site's intent; the manager's signed
    commit for another site on top does not vouch for it: refused, naming the intruder's
    commit, the head, the file it changes and that the site reads it."""
    env = signed
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="intruder-1", sequence=9)
    intruder = signers.commit(env.remote.work, "intruder: sfo intent", key=None)
    gitrepo.restamp(env.remote, site=OTHER, new_id="nyc-2", sequence=2)
    head = signers.commit(env.remote.work, "manager: publish nyc-2", key="gpg")
    env.remote.push()
    message = refused(env)
    assert message.startswith(f"commit {intruder[:12]} under the head {head[:12]} of branch "
                              f"'main' of {env.remote.url} refused: unsigned; it changes "
                              f"{INTENT}, which site {sites.SITE} reads"), message


def test_a_signed_change_to_the_site_does_not_vouch_for_an_unsigned_one_under_it(
        signers: Signers, signed: sites.Env):
    """Every commit since the last fetched head that changes the site's files is checked,
    not only the newest: an intruder's untrusted change stays refused under the manager's
    signed change to the same site."""
    env = signed
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="intruder-1", sequence=9)
    intruder = signers.commit(env.remote.work, "intruder", key="ssh:other")
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="sfo-2", sequence=10)
    signers.commit(env.remote.work, "manager: sfo-2", key="ssh")
    env.remote.push()
    message = refused(env)
    assert message.startswith(f"commit {intruder[:12]} under the head")
    assert (f"refused: signed by untrusted key {signers.ssh_fingerprints[INTRUDER]}; it "
            f"changes {INTENT}") in message


def test_an_unsigned_change_to_crds_is_refused_for_every_site(signers: Signers,
                                                              signed: sites.Env):
    """crds/ is read by every site: an unsigned change there under a signed head is
    refused, naming the CRD file."""
    env = signed
    crd = "crds/networkfunctions.telco.example.com.yaml"
    env.remote.write(crd, env.remote.read(crd) + "# changed\n")
    intruder = signers.commit(env.remote.work, "intruder: crd", key=None)
    signers.commit(env.remote.work, "manager: other", key="gpg")
    env.remote.push()
    message = refused(env)
    assert f"commit {intruder[:12]} under the head" in message
    assert f"it changes {crd}, which site {sites.SITE} reads" in message


def test_unsigned_commits_to_files_the_site_does_not_read_are_not_checked(
        signers: Signers, signed: sites.Env):
    """Unsigned commits that change only another site's folder or the README, under a
    signed head, do not hold this site."""
    env = signed
    gitrepo.restamp(env.remote, site=OTHER, new_id="nyc-2", sequence=2)
    signers.commit(env.remote.work, "someone: nyc", key=None)
    env.remote.write("README.md", "fleet\n")
    signers.commit(env.remote.work, "someone: readme", key="ssh:other")
    head = signers.commit(env.remote.work, "manager: go", key="gpg")
    env.remote.push()
    result = env.sync()
    assert result.ok, result.message
    assert env.store.load().last_fetched_head == head


def test_dropping_the_unsigned_commit_from_the_branch_lets_the_site_go_on(
        signers: Signers, signed: sites.Env):
    """The way out: the branch rewritten without the intruder's commit descends from the
    site's last fetched head (refused heads never moved it), so it is accepted without
    --allow-history-rewrite."""
    env = signed
    baseline = env.store.load().last_fetched_head
    assert baseline is not None
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="intruder-1", sequence=9)
    signers.commit(env.remote.work, "intruder", key=None)
    env.remote.push()
    refused(env)
    env.remote.reset_hard(baseline)
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="sfo-2", sequence=2)
    head = signers.commit(env.remote.work, "manager: sfo-2", key="gpg")
    env.remote.push(force=True)
    result = env.sync()
    assert result.ok, result.message
    assert result.commit == head and env.store.load().accepted.id == "sfo-2"  # type: ignore[union-attr]


def branch(signers: Signers, env: sites.Env, name: str, *, at: str = "HEAD") -> None:
    signers.git("checkout", "-q", "-b", name, at, cwd=env.remote.work)


def back(signers: Signers, env: sites.Env) -> None:
    signers.git("checkout", "-q", "main", cwd=env.remote.work)


def test_an_unsigned_merge_of_signed_changes_is_accepted(signers: Signers, signed: sites.Env):
    """A forge's unsigned merge commit that takes the site's files as its signed side
    has them brings nothing of its own: accepted (the head must still be signed, so a
    signed commit lands on top)."""
    env = signed
    branch(signers, env, "pr")
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="sfo-2", sequence=2)
    signers.commit(env.remote.work, "manager: sfo-2", key="ssh")
    back(signers, env)
    signers.merge(env.remote.work, "pr", key=None, message="Merge pull request #1")
    head = signers.commit(env.remote.work, "manager: go", key="gpg")
    env.remote.push()
    result = env.sync()
    assert result.ok, result.message
    assert result.commit == head and env.store.load().accepted.id == "sfo-2"  # type: ignore[union-attr]


def test_an_unsigned_commit_brought_in_by_a_signed_merge_is_refused(signers: Signers,
                                                                    signed: sites.Env):
    """A merge signed by the manager does not vouch for the unsigned commit of its side
    branch that changes the site's files: refused, naming that commit."""
    env = signed
    branch(signers, env, "side")
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="intruder-1", sequence=9)
    intruder = signers.commit(env.remote.work, "intruder", key=None)
    back(signers, env)
    signers.merge(env.remote.work, "side", key="gpg")
    env.remote.push()
    assert f"commit {intruder[:12]} under the head" in refused(env)


def test_an_unsigned_merge_that_combines_changes_to_the_site_is_refused(
        signers: Signers, signed: sites.Env):
    """A merge whose site files differ from every parent's (two sides' changes combined,
    or a conflict resolved) made content of its own: unsigned, it is refused, named."""
    env = signed
    branch(signers, env, "side")
    env.remote.write(f"sites/{sites.SITE}/manifests/40-extra.yaml",
                     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: "
                     "sfo-ran}\n")
    signers.commit(env.remote.work, "manager: extra", key="gpg")
    back(signers, env)
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="sfo-2", sequence=2)
    signers.commit(env.remote.work, "manager: sfo-2", key="gpg")
    merge = signers.merge(env.remote.work, "side", key=None)
    signers.commit(env.remote.work, "manager: go", key="gpg")
    env.remote.push()
    message = refused(env)
    assert message.startswith(f"commit {merge[:12]} under the head"), message
    assert "refused: unsigned; it changes sites/edge-sfo-01/" in message


def test_files_taken_from_a_side_branch_a_merge_once_dropped_are_refused(
        signers: Signers, env: sites.Env):
    """A first fetch accepts a history where an unsigned merge dropped an intruder's side
    branch (its change is no file's last change); a later merge that takes the site's
    files from that side (behind the last fetched head, so outside the commits checked)
    is refused: they never came from a trusted commit."""
    work = env.remote.work
    signers.sign_head(work, key="gpg")
    branch(signers, env, "side")
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="intruder-1", sequence=9)
    intruder = signers.commit(work, "intruder", key=None)
    back(signers, env)
    signers.merge(work, "side", key=None, options=("-s", "ours"))
    dropped = signers.commit(work, "manager: go", key="gpg")
    env.remote.push(force=True)
    result = env.sync()
    assert result.ok, result.message
    assert env.store.load().last_fetched_head == dropped
    signers.git("checkout", "-q", "side", cwd=work)
    taken = signers.merge(work, "main", key=None, options=("-s", "ours"))
    signers.git("checkout", "-q", "-B", "main", cwd=work)
    head = signers.commit(work, "manager: go again", key="gpg")
    env.remote.push()
    message = refused(env)
    assert message.startswith(f"commit {taken[:12]} under the head {head[:12]}"), message
    assert (f"it takes the files site {sites.SITE} reads from commit {intruder[:12]}, which "
            "the site never accepted") in message
    assert "and it is unsigned" in message


# --- a first fetch: the last change of each file --------------------------------------


def test_a_first_fetch_checks_the_last_change_of_each_file(signers: Signers, env: sites.Env):
    """With no fetched head, a signed empty commit on the unsigned baseline is refused,
    naming the baseline as the last change of a file the site reads; after a signed
    commit changes every one of them, the old unsigned history no longer matters."""
    baseline = gitrepo.git("rev-parse", "HEAD", cwd=env.remote.work)
    signers.commit(env.remote.work, "manager: go", key="gpg")
    env.remote.push()
    message = refused(env)
    assert f"commit {baseline[:12]} under the head" in message
    assert "refused: unsigned; it is the last change of crds/" in message
    assert f"site {sites.SITE} reads (first fetch" in message
    for path in sorted((env.remote.work / "crds").iterdir()):
        path.write_text(path.read_text() + "# reviewed\n")
    for path in sorted((env.remote.work / "sites" / sites.SITE).rglob("*.yaml")):
        path.write_text(path.read_text() + "# reviewed\n")
    head = signers.commit(env.remote.work, "manager: reviewed", key="ssh")
    env.remote.push()
    result = env.sync()
    assert result.ok, result.message
    assert result.commit == head


def test_a_first_fetch_refuses_an_unsigned_last_change_under_signed_ones(
        signers: Signers, env: sites.Env):
    """On a first fetch, an intruder's unsigned last change of one CRD file is refused even
    when the other files' last changes are signed."""
    signers.sign_head(env.remote.work, key="gpg")
    crd = "crds/workloadclusters.telco.example.com.yaml"
    env.remote.write(crd, env.remote.read(crd) + "# intruder\n")
    intruder = signers.commit(env.remote.work, "intruder", key=None)
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="sfo-2", sequence=2)
    signers.commit(env.remote.work, "manager: sfo-2", key="gpg")
    env.remote.push(force=True)
    message = refused(env)
    assert f"commit {intruder[:12]} under the head" in message
    assert f"it is the last change of {crd}" in message


def test_a_first_fetch_reads_only_the_recent_part_of_a_long_history(
        signers: Signers, env: sites.Env):
    """A first fetch walks back only until each file's last change is found: 300 older
    unsigned commits of the site are never checked, so a signed recent history passes."""
    work = env.remote.work
    intent = work / INTENT
    text = intent.read_text()
    for number in range(300):
        intent.write_text(text + f"# {number}\n")
        signers.git("commit", "-q", "-am", f"old {number}", cwd=work)
    for path in [*(work / "crds").iterdir(), *(work / "sites" / sites.SITE).rglob("*.yaml")]:
        path.write_text(path.read_text() + "# reviewed\n")
    head = signers.commit(work, "manager: reviewed", key="gpg")
    env.remote.push()
    result = env.sync()
    assert result.ok, result.message
    assert result.commit == head


# --- replace refs and grafts (review N3) ----------------------------------------------


def test_a_replace_ref_in_the_cache_changes_nothing_the_site_reads(
        signers: Signers, signed: sites.Env, tmp_path: Path):
    """A refs/replace entry in the cache that swaps the signed head for an unsigned commit
    of another intent: the site still reads (and applies) the signed head's files."""
    env = signed
    work = env.remote.work
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="evil-1", sequence=7)
    evil = signers.commit(work, "unsigned evil", key=None)
    signers.git("push", "-q", "origin", "HEAD:refs/heads/evil", cwd=work)
    signers.git("reset", "-q", "--hard", "HEAD~1", cwd=work)
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="good-2", sequence=2)
    good = signers.commit(work, "signed good", key="gpg")
    env.remote.push(force=True)
    cache = next((tmp_path / "cache").glob("*.git"))
    gitrepo.git("fetch", "-q", env.remote.url, "refs/heads/evil:refs/x/evil",
                "refs/heads/main:refs/x/main", cwd=cache)
    gitrepo.git("replace", good, evil, cwd=cache)
    result = env.sync()
    assert result.ok, result.message
    accepted = env.store.load().accepted
    assert accepted is not None and accepted.id == "good-2" and accepted.commit == good
    src = source.Source(url=env.remote.url, branch="main", cache_dir=tmp_path / "cache")
    assert "id: good-2" in src.commit(good).tree[INTENT].data_stream.read().decode()


def test_a_graft_in_the_cache_does_not_hide_a_rewritten_history(
        signers: Signers, signed: sites.Env, tmp_path: Path):
    """An info/grafts line in the cache that makes a rewritten head look like a descendant
    of the last fetched head does not pass the history guard."""
    env = signed
    baseline = env.store.load().last_fetched_head
    assert baseline is not None
    work = env.remote.work
    signers.git("checkout", "-q", "--orphan", "rewritten", cwd=work)
    rewritten = signers.commit(work, "rewritten", key="gpg")
    signers.git("push", "-q", "--force", "origin", "HEAD:refs/heads/main", cwd=work)
    cache = next((tmp_path / "cache").glob("*.git"))
    (cache / "info").mkdir(exist_ok=True)
    (cache / "info" / "grafts").write_text(f"{rewritten} {baseline}\n")
    result = env.sync()
    assert not result.ok
    assert "was rewritten" in result.message, result.message


# --- plan and the environment (review N4, N5) -------------------------------------------


def plan(env: sites.Env, tmp_path: Path, *extra: str) -> int:
    return cli.main(["plan", "--repo", env.remote.url, "--site", sites.SITE, "--ref", "main",
                     "--state-dir", str(tmp_path / "state"), "--cache-dir",
                     str(tmp_path / "plan-cache"), *extra])


def keys(signers: Signers) -> tuple[str, ...]:
    return ("--verify-signatures", "--trusted-keys", str(signers.keyring),
            "--allowed-signers", str(signers.allowed_signers))


def test_plan_refuses_what_sync_refuses(signers: Signers, signed: sites.Env, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]):
    """`plan --verify-signatures` against the site's state refuses (exit 1) an unsigned
    change to the site under a signed head, naming the commit as sync does; without the
    flag it would accept; a signed change plans with exit 0."""
    env = signed
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="intruder-1", sequence=9)
    intruder = signers.commit(env.remote.work, "intruder", key=None)
    gitrepo.restamp(env.remote, site=OTHER, new_id="nyc-2", sequence=2)
    signers.commit(env.remote.work, "manager: nyc-2", key="gpg")
    env.remote.push()
    capsys.readouterr()
    assert plan(env, tmp_path, *keys(signers)) == 1
    out = capsys.readouterr().out
    assert f"commit {intruder[:12]} under the head" in out and "refused: unsigned" in out
    assert plan(env, tmp_path) == 0
    assert "refused" not in capsys.readouterr().out
    assert "refused: unsigned" in refused(env)  # sync agrees
    env.remote.reset_hard("HEAD~2")
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="sfo-2", sequence=2)
    signers.commit(env.remote.work, "manager: sfo-2", key="ssh")
    env.remote.push(force=True)
    assert plan(env, tmp_path, *keys(signers)) == 0, capsys.readouterr().out
    assert env.sync().ok


def test_verify_signatures_can_be_turned_on_by_the_environment(
        signers: Signers, env: sites.Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    """RECONCILER_VERIFY_SIGNATURES=true turns the check on as the flag does (no keys: exit
    2; with RECONCILER_TRUSTED_KEYS: an unsigned head refused, exit 1); a value that is
    not true or false is a usage error naming the variable. (`plan`, which shares the
    flags with sync and run, needs no cluster.)"""
    base = ["plan", "--repo", env.remote.url, "--site", sites.SITE, "--state-dir",
            str(tmp_path / "state"), "--cache-dir", str(tmp_path / "cache")]
    monkeypatch.setenv("RECONCILER_VERIFY_SIGNATURES", "maybe")
    assert cli.main(base) == 2
    assert "$RECONCILER_VERIFY_SIGNATURES must be true or false, not 'maybe'" in \
        capsys.readouterr().err
    monkeypatch.setenv("RECONCILER_VERIFY_SIGNATURES", "true")
    assert cli.main(base) == 2
    assert "--verify-signatures needs the trusted keys" in capsys.readouterr().err
    monkeypatch.setenv("RECONCILER_TRUSTED_KEYS", str(signers.keyring))
    assert cli.main(base) == 1
    assert "refused: unsigned" in capsys.readouterr().out
    monkeypatch.setenv("RECONCILER_VERIFY_SIGNATURES", "false")
    monkeypatch.delenv("RECONCILER_TRUSTED_KEYS")
    assert cli.main(base) == 0, capsys.readouterr().out
