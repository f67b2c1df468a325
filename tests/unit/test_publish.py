"""`reconciler intent publish` on real Git repositories: stamp, intent.yaml, commit, sign, push."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel import yaml as ruamel_yaml

from reconciler import cli, contract
from reconciler.manager import publish
from tests import gitrepo

SITE = "edge-sfo-01"
SITE_DIR = f"sites/{SITE}"
INTENT = f"{SITE_DIR}/intent.yaml"


NEW_CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-new, namespace: sfo-ran}\n"


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> gitrepo.GitRemote:
    """The sample repository committed and pushed to a bare remote, with git kept away from
    the user's own configuration and given a committer identity."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Manager")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "manager@example.com")
    repo = gitrepo.GitRemote(tmp_path / "git")
    repo.copy_from(contract.sample_repo_dir())
    repo.commit_and_push("Baseline intents for edge-sfo-01 and edge-nyc-02")
    return repo


def run(fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str], *args: str,
        site: str = SITE) -> tuple[int, str, str]:
    """`reconciler intent publish --repo <work tree> --site SITE ...`: exit code, out, err."""
    code = cli.main(["intent", "publish", "--repo", str(fleet.work), "--site", site, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def git(fleet: gitrepo.GitRemote, *args: str) -> str:
    """git in the work tree with this process's environment (GNUPGHOME included)."""
    done = subprocess.run(["git", *args], cwd=fleet.work, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def snapshot(fleet: gitrepo.GitRemote) -> tuple[str, str, str, dict[str, bytes]]:
    """HEAD, `git status`, the index, and every file's bytes: to show nothing changed."""
    files = {str(p.relative_to(fleet.work)): p.read_bytes()
             for p in sorted(fleet.work.rglob("*")) if p.is_file() and ".git" not in p.parts}
    return (git(fleet, "rev-parse", "HEAD"), git(fleet, "status", "--porcelain"),
            git(fleet, "ls-files", "--stage"), files)


def intent_spec(fleet: gitrepo.GitRemote, rev: str = "HEAD") -> dict[str, Any]:
    spec: dict[str, Any] = ruamel_yaml.YAML(typ="safe").load(
        git(fleet, "show", f"{rev}:{INTENT}"))["spec"]
    return spec


def ids_at(fleet: gitrepo.GitRemote, rev: str = "HEAD", site: str = SITE) -> set[str]:
    """The intent-id annotation of every manifest document of the site at `rev`."""
    found = set()
    files = git(fleet, "ls-tree", "-r", "--name-only", rev, f"sites/{site}/manifests").split()
    for path in files:
        for doc in ruamel_yaml.YAML(typ="safe").load_all(git(fleet, "show", f"{rev}:{path}")):
            found.add(doc["metadata"]["annotations"][contract.ANNOTATION_INTENT_ID])
    return found


def trailer(fleet: gitrepo.GitRemote, key: str) -> str:
    return git(fleet, "log", "-1", f"--format=%(trailers:key={key},valueonly)")


@pytest.fixture
def gnupghome(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty GnuPG home short enough for the agent's socket path; its agent is killed."""
    home = Path(tempfile.mkdtemp(dir="/tmp", prefix="gpg-"))
    home.chmod(0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    try:
        yield home
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ,
                       "GNUPGHOME": str(home)}, capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


# --- what a publish commits ---------------------------------------------------------------


def test_publish_commits_the_site_with_trailers(fleet: gitrepo.GitRemote,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The commit carries Intent-Id and Site trailers, touches only the site's files, stamps
    every manifest and writes id, sequence and description into intent.yaml."""
    before = git(fleet, "rev-parse", "HEAD")
    code, out, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "Upgrade the UPF to 2.4\n\n"
                         "Body text.")
    assert code == 0, err
    assert trailer(fleet, "Intent-Id") == "upf-2-4"
    assert trailer(fleet, "Site") == SITE
    assert git(fleet, "log", "-1", "--format=%B") == (
        "Upgrade the UPF to 2.4\n\nBody text.\n\nIntent-Id: upf-2-4\nSite: edge-sfo-01")
    changed = git(fleet, "diff", "--name-only", before, "HEAD").split()
    assert changed == sorted([INTENT] + [f"{SITE_DIR}/manifests/{name}" for name in (
        "00-namespace.yaml", "10-workloadcluster.yaml", "20-networkfunctions.yaml",
        "30-configmap.yaml")])
    assert ids_at(fleet) == {"upf-2-4"}
    assert ids_at(fleet, site="edge-nyc-02") == {"nyc-baseline-1"}
    assert intent_spec(fleet) == {**intent_spec(fleet, before), "id": "upf-2-4", "sequence": 2,
                                  "description": "Upgrade the UPF to 2.4"}
    assert git(fleet, "status", "--porcelain") == ""
    sha = git(fleet, "rev-parse", "HEAD")
    assert f"commit:      {sha}" in out
    assert "4 files, 5 documents stamped; 0 documents already carried the id" in out
    assert "signed:      no" in out


def test_sequence_counts_up_and_description_can_be_given(fleet: gitrepo.GitRemote,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """Without --sequence each publish takes the current sequence plus one."""
    assert run(fleet, capsys, "-m", "first")[0] == 0
    assert intent_spec(fleet)["sequence"] == 2
    assert run(fleet, capsys, "-m", "second", "--description", "Second: UPF #2")[0] == 0
    spec = intent_spec(fleet)
    assert (spec["sequence"], spec["description"]) == (3, "Second: UPF #2")
    assert run(fleet, capsys, "-m", "jump", "--sequence", "10")[0] == 0
    assert intent_spec(fleet)["sequence"] == 10


def test_generated_id_is_valid_and_names_the_site(fleet: gitrepo.GitRemote,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A generated id is `<site>-<date>-<6 hex>` and matches the id pattern."""
    code, out, err = run(fleet, capsys, "-m", "generated", "-o", "json")
    assert code == 0, err
    intent_id = json.loads(out)["intentId"]
    assert contract.INTENT_ID_PATTERN.match(intent_id)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    prefix, suffix = intent_id.rsplit("-", 1)
    assert prefix in (f"{SITE}-{date}", f"{SITE}-{int(date) - 1}")
    assert len(suffix) == 6 and int(suffix, 16) >= 0
    assert intent_spec(fleet)["id"] == intent_id == trailer(fleet, "Intent-Id")


def test_generated_id_of_a_long_site_fits_the_pattern() -> None:
    """A 63-character site name is cut so the generated id stays within 63 characters."""
    site = "a" * 40 + "-" + "b" * 22
    intent_id = publish.generate_id(
        site=site, clock=lambda: datetime.datetime(2025, 3, 4, tzinfo=datetime.UTC),
        token=lambda: "abc123")
    assert intent_id == "a" * 40 + "-" + "b" * 6 + "-20250304-abc123"
    assert len(intent_id) == 63 and contract.INTENT_ID_PATTERN.match(intent_id)


def test_missing_intent_file_is_created(fleet: gitrepo.GitRemote,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A site without intent.yaml gets one with apiVersion, kind, the site's name and spec."""
    fleet.remove(INTENT)
    fleet.commit("Drop the intent")
    code, _, err = run(fleet, capsys, "--id", "first-ever", "-m", "First intent")
    assert code == 0, err
    doc = ruamel_yaml.YAML(typ="safe").load(git(fleet, "show", f"HEAD:{INTENT}"))
    assert doc == {"apiVersion": contract.INTENT_API_VERSION, "kind": contract.INTENT_KIND,
                   "metadata": {"name": SITE},
                   "spec": {"id": "first-ever", "sequence": 1, "description": "First intent"}}


def test_json_output_has_the_same_facts(fleet: gitrepo.GitRemote,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """-o json reports commit, id, sequence, counts, signing and the per-document actions."""
    code, out, _ = run(fleet, capsys, "--id", "j-1", "-m", "json", "-o", "json")
    assert code == 0
    body = json.loads(out)
    assert body["commit"] == git(fleet, "rev-parse", "HEAD")
    assert (body["intentId"], body["sequence"], body["site"]) == ("j-1", 2, SITE)
    assert (body["previousId"], body["previousSequence"]) == ("sfo-baseline-1", 1)
    assert (body["filesStamped"], body["documentsStamped"], body["documentsUnchanged"]) == (4, 5, 0)
    assert body["signed"] is False and body["pushed"] is None and body["dryRun"] is False
    functions = next(f for f in body["files"] if f["path"].endswith("20-networkfunctions.yaml"))
    assert [(d["object"], d["action"], d["previous"]) for d in functions["documents"]] == [
        ("NetworkFunction/sfo-ran/sfo-upf", "replaced", "sfo-baseline-1"),
        ("NetworkFunction/sfo-ran/sfo-smf", "replaced", "sfo-baseline-1")]


def test_manifests_already_carrying_the_id_are_left_untouched(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest the manager already stamped with the new id is counted, not rewritten."""
    path = f"{SITE_DIR}/manifests/30-configmap.yaml"
    fleet.write(path, fleet.read(path).replace("sfo-baseline-1", "pre-stamped"))
    fleet.commit("Pre-stamp the config map")
    before = git(fleet, "rev-parse", "HEAD")
    code, out, _ = run(fleet, capsys, "--id", "pre-stamped", "-m", "Roll out")
    assert code == 0
    assert path not in git(fleet, "diff", "--name-only", before, "HEAD").split()
    assert "3 files, 4 documents stamped; 1 documents already carried the id" in out


# --- refusals -----------------------------------------------------------------------------


def test_dirty_tree_is_refused_before_anything_is_written(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """Unstaged, staged and untracked changes anywhere are refused, listing the paths."""
    fleet.write("README.md", "edited\n")
    fleet.write("sites/edge-nyc-02/notes.txt", "untracked\n")
    fleet.write(f"{SITE_DIR}/manifests/40-new.yaml", NEW_CONFIG_MAP)
    git(fleet, "add", f"{SITE_DIR}/manifests/40-new.yaml")
    before = snapshot(fleet)
    code, out, err = run(fleet, capsys, "-m", "dirty")
    assert code == 2 and out == ""
    assert "has uncommitted changes" in err
    for path in ("README.md", "sites/edge-nyc-02/", f"{SITE_DIR}/manifests/40-new.yaml"):
        assert path in err
    assert "--allow-dirty" in err
    assert snapshot(fleet) == before


def test_allow_dirty_commits_the_site_and_leaves_the_rest(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """With --allow-dirty the commit holds the site's pending edits (a new file, an edited one,
    stamped) and nothing else; changes elsewhere stay as they were, staged or not."""
    upf = f"{SITE_DIR}/manifests/20-networkfunctions.yaml"
    fleet.write(upf, fleet.read(upf).replace('version: "2.3.1"', 'version: "2.4.0"'))
    fleet.write(f"{SITE_DIR}/manifests/40-new.yaml",
                "# new\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-new\n"
                "  namespace: sfo-ran\n")
    fleet.write("README.md", "staged edit\n")
    git(fleet, "add", "README.md")
    fleet.write("sites/edge-nyc-02/intent.yaml",
                fleet.read("sites/edge-nyc-02/intent.yaml") + "# unstaged\n")
    fleet.write("scratch.txt", "untracked\n")
    others = [line for line in git(fleet, "status", "--porcelain").splitlines()
              if SITE_DIR not in line]
    code, _, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "UPF 2.4", "--allow-dirty")
    assert code == 0, err
    committed = git(fleet, "show", "--name-only", "--format=", "HEAD").split()
    assert all(path.startswith(f"{SITE_DIR}/") for path in committed)
    assert f"{SITE_DIR}/manifests/40-new.yaml" in committed
    assert 'version: "2.4.0"' in git(fleet, "show", f"HEAD:{upf}")
    assert git(fleet, "show", f"HEAD:{SITE_DIR}/manifests/40-new.yaml") == (
        "# new\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-new\n  namespace: sfo-ran\n"
        "  annotations:\n    reconciler.dev/intent-id: upf-2-4")
    assert ids_at(fleet) == {"upf-2-4"}
    assert git(fleet, "status", "--porcelain").splitlines() == others
    assert git(fleet, "diff", "--cached", "--name-only") == "README.md"


@pytest.mark.parametrize(("args", "expected"), [
    (["--id", "sfo-baseline-1"], "is already edge-sfo-01's current intent"),
    (["--id", "bad id"], "invalid intent id 'bad id'"),
    (["--id", "x" * 64], "invalid intent id"),
    (["--sequence", "1"], "--sequence 1 is not higher than edge-sfo-01's current sequence 1"),
    (["--sequence", "-3"], "--sequence must be 0 or more"),
])
def test_wrong_ids_and_sequences_are_refused(fleet: gitrepo.GitRemote,
                                             capsys: pytest.CaptureFixture[str],
                                             args: list[str], expected: str) -> None:
    """The current id, a malformed id and a sequence not above the current one: exit 2."""
    before = snapshot(fleet)
    code, _, err = run(fleet, capsys, *args, "-m", "nope")
    assert code == 2
    assert expected in err
    assert snapshot(fleet) == before


def test_a_superseded_id_is_refused(fleet: gitrepo.GitRemote,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """An id published for the site before (an Intent-Id trailer) is refused: a rollback
    needs a new id. The same id for another site is fine."""
    assert run(fleet, capsys, "--id", "upf-2-4", "-m", "UPF 2.4")[0] == 0
    first = git(fleet, "rev-parse", "HEAD")
    assert run(fleet, capsys, "--id", "upf-2-5", "-m", "UPF 2.5")[0] == 0
    code, _, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "Back to 2.4")
    assert code == 2
    assert f"was published for {SITE} before (commit {first[:12]})" in err
    assert "a rollback needs a new id" in err
    assert run(fleet, capsys, "--id", "upf-2-4", "-m", "nyc", site="edge-nyc-02")[0] == 0


def test_unknown_site_and_non_repository_are_refused(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A site folder that does not exist lists the sites; a plain folder is not a work tree."""
    code, _, err = run(fleet, capsys, "-m", "x", site="edge-lax-03")
    assert code == 2
    assert "sites/edge-lax-03/: no such site" in err
    assert "(sites: edge-nyc-02, edge-sfo-01)" in err
    plain = tmp_path / "plain"
    plain.mkdir()
    code = cli.main(["intent", "publish", "--repo", str(plain), "--site", SITE, "-m", "x"])
    assert code == 2
    assert f"{plain}: not a Git work tree" in capsys.readouterr().err


def test_a_manifest_that_cannot_be_stamped_stops_everything(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """A refused layout in one file fails with exit 1 naming it, and nothing is written."""
    path = f"{SITE_DIR}/manifests/50-shared.yaml"
    fleet.write(path, "kind: ConfigMap\nmetadata:\n  name: s\n  annotations: &a {k: v}\n"
                      "data: {copy: *a}\n")
    fleet.commit("Shared annotations")
    before = snapshot(fleet)
    code, _, err = run(fleet, capsys, "-m", "x")
    assert code == 1
    assert f"{path}:4 (document 1) ConfigMap/s: metadata.annotations is anchored (&a)" in err
    assert snapshot(fleet) == before


# --- dry run --------------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_shows_the_diff(fleet: gitrepo.GitRemote,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run writes and commits nothing and prints the diff and the commit message."""
    before = snapshot(fleet)
    code, out, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "UPF 2.4", "--dry-run")
    assert code == 0, err
    assert snapshot(fleet) == before
    assert f"--- a/{INTENT}\n+++ b/{INTENT}\n" in out
    assert "-  id: sfo-baseline-1  # opaque" in out and "+  id: upf-2-4  # opaque" in out
    assert out.count("+    reconciler.dev/intent-id: upf-2-4\n") == 5
    assert "    Intent-Id: upf-2-4\n    Site: edge-sfo-01\n" in out
    assert "Nothing was written or committed." in out
    code, out, _ = run(fleet, capsys, "--id", "upf-2-4", "-m", "UPF 2.4", "--dry-run",
                       "-o", "json")
    body = json.loads(out)
    assert body["dryRun"] is True and body["commit"] is None
    assert body["diff"].startswith("--- a/sites/edge-sfo-01/manifests/00-namespace.yaml")
    assert snapshot(fleet) == before


# --- push -----------------------------------------------------------------------------------


def test_push_sends_the_commit_to_the_remote(fleet: gitrepo.GitRemote,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--push puts the new commit on the remote's branch of the same name."""
    code, out, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "UPF 2.4", "--push")
    assert code == 0, err
    head = git(fleet, "rev-parse", "HEAD")
    assert gitrepo.git("rev-parse", "refs/heads/main", cwd=fleet.bare) == head
    assert f"pushed:      origin ({fleet.bare}) refs/heads/main" in out


def test_push_follows_the_upstream_branch(fleet: gitrepo.GitRemote,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """With an upstream configured, --push goes to that remote and branch."""
    git(fleet, "remote", "add", "fleet", str(fleet.bare))
    git(fleet, "push", "-q", "fleet", "main:refs/heads/production")
    git(fleet, "branch", "--set-upstream-to=fleet/production")
    code, out, _ = run(fleet, capsys, "--id", "upf-2-4", "-m", "UPF 2.4", "--push", "-o", "json")
    assert code == 0
    assert json.loads(out)["pushed"] == {"remote": "fleet", "url": str(fleet.bare),
                                         "ref": "refs/heads/production"}
    assert gitrepo.git("rev-parse", "refs/heads/production", cwd=fleet.bare) == \
        git(fleet, "rev-parse", "HEAD")


def test_rejected_push_keeps_the_commit_and_says_what_to_do(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A non-fast-forward push fails with exit 1; the local commit stays and is reported."""
    other = tmp_path / "other"
    gitrepo.git("clone", "-q", str(fleet.bare), str(other), cwd=tmp_path)
    (other / "README.md").write_text("someone else\n")
    gitrepo.git("commit", "-qam", "Someone else's change", cwd=other)
    gitrepo.git("push", "-q", "origin", "main", cwd=other)
    remote_head = gitrepo.git("rev-parse", "refs/heads/main", cwd=fleet.bare)
    code, out, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "UPF 2.4", "--push")
    assert code == 1
    head = git(fleet, "rev-parse", "HEAD")
    assert trailer(fleet, "Intent-Id") == "upf-2-4"
    assert "was rejected" in err and "non-fast-forward" in err
    assert f"The intent commit {head[:12]} stays in the local branch" in err
    assert "git pull --rebase origin main" in err
    assert f"commit:      {head}" in out and "pushed:      no" in out
    assert gitrepo.git("rev-parse", "refs/heads/main", cwd=fleet.bare) == remote_head


def test_push_a_remote_refuses_is_a_failure_with_the_remotes_reason(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """A push the remote's hook declines is no non-fast-forward: git's per-ref status and
    what the hook said are shown, and the local commit stays."""
    hook = fleet.bare / "hooks" / "pre-receive"
    hook.write_text('#!/bin/sh\necho "main is protected: open a merge request" >&2\nexit 1\n')
    hook.chmod(0o755)
    remote_head = gitrepo.git("rev-parse", "refs/heads/main", cwd=fleet.bare)
    code, out, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "UPF 2.4", "--push")
    assert code == 1
    head = git(fleet, "rev-parse", "HEAD")
    assert "non-fast-forward" not in err and "git pull --rebase" not in err
    assert (f"push to origin ({fleet.bare}) failed: [remote rejected] (pre-receive hook "
            "declined); remote: main is protected: open a merge request; error: failed to "
            f"push some refs to '{fleet.bare}'. The intent commit {head[:12]} stays in the "
            "local branch: push it with git push origin HEAD:refs/heads/main") in err
    assert f"commit:      {head}" in out
    assert gitrepo.git("rev-parse", "refs/heads/main", cwd=fleet.bare) == remote_head


def test_a_failed_git_command_is_chained_to_the_publish_error(
        fleet: gitrepo.GitRemote, gnupghome: Path) -> None:
    """A failing git command (here a signed commit without a key) is the error's cause."""
    options = publish.Options(repo=fleet.work, site=SITE, message="unsigned", sign=True)
    with pytest.raises(publish.PublishError, match="signing and committing failed") as caught:
        publish.publish(options=options)
    inner = caught.value.__cause__
    assert isinstance(inner, publish.PublishError)
    assert type(inner.__cause__).__name__ == "GitCommandError"


def test_a_push_url_with_credentials_is_refused_before_committing(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """A push URL carrying a password is refused (exit 2) before anything is written, with
    the password redacted and the credentials file named instead (docs/git.md)."""
    git(fleet, "remote", "add", "secret", "https://manager:s3cr3t-token@127.0.0.1:9/fleet.git")
    before = snapshot(fleet)
    code, out, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "UPF 2.4", "--push",
                         "--remote", "secret")
    assert code == 2
    assert "s3cr3t-token" not in out + err
    assert "https://manager:***@127.0.0.1:9/fleet.git carries credentials" in err
    assert "--git-credentials-file" in err
    assert snapshot(fleet) == before


def test_unknown_remote_is_refused_before_committing(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """--remote naming no remote fails with exit 2 before anything is written."""
    before = snapshot(fleet)
    code, _, err = run(fleet, capsys, "-m", "x", "--push", "--remote", "nowhere")
    assert code == 2
    assert "no remote named 'nowhere' to push to (remotes: origin)" in err
    assert snapshot(fleet) == before


# --- signing with real gpg and ssh-keygen ---------------------------------------------------


def test_sign_with_gpg(fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str],
                       gnupghome: Path) -> None:
    """--sign makes a commit git verifies with the manager's GnuPG key."""
    subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                    "--quick-gen-key", "Manager <manager@example.com>", "ed25519", "sign",
                    "never"], check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--list-secret-keys", "--with-colons"], check=True,
                             capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                       if line.startswith("fpr:"))
    git(fleet, "config", "user.signingkey", fingerprint)
    code, out, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "Signed UPF 2.4", "--sign")
    assert code == 0, err
    assert "signed:      yes" in out
    git(fleet, "verify-commit", "HEAD")
    assert git(fleet, "log", "-1", "--format=%G?") == "G"
    assert git(fleet, "log", "-1", "--format=%GF") == fingerprint


def test_sign_with_ssh(fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str],
                       tmp_path: Path) -> None:
    """With gpg.format ssh, --sign makes a commit git verifies against allowed signers."""
    key = tmp_path / "manager_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "manager",
                    "-f", str(key)], check=True, capture_output=True)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'manager@example.com namespaces="git" '
                       f'{key.with_suffix(".pub").read_text().strip()}\n')
    git(fleet, "config", "gpg.format", "ssh")
    git(fleet, "config", "user.signingkey", str(key))
    git(fleet, "config", "gpg.ssh.allowedSignersFile", str(allowed))
    code, out, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "Signed UPF 2.4", "--sign",
                         "-o", "json")
    assert code == 0, err
    assert json.loads(out)["signed"] is True
    git(fleet, "verify-commit", "HEAD")
    assert git(fleet, "log", "-1", "--format=%G?") == "G"


def test_failed_signing_leaves_the_repository_as_it_was(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str], gnupghome: Path) -> None:
    """--sign without a usable key fails with exit 1: no commit, and the files, the index and
    the pending edits are exactly as before."""
    upf = f"{SITE_DIR}/manifests/20-networkfunctions.yaml"
    fleet.write(upf, fleet.read(upf).replace("replicas: 2", "replicas: 3", 1))
    git(fleet, "add", upf)
    fleet.write(upf, fleet.read(upf).replace("replicas: 2", "replicas: 4", 1))
    fleet.write(f"{SITE_DIR}/manifests/40-new.yaml", NEW_CONFIG_MAP)
    before = snapshot(fleet)
    code, out, err = run(fleet, capsys, "-m", "unsigned", "--sign", "--allow-dirty")
    assert code == 1 and out == ""
    assert "signing and committing failed" in err
    assert "nothing was committed, and the files and the index are as they were" in err
    assert snapshot(fleet) == before
    assert "Traceback" not in err


def test_symlinked_intent_file_is_refused_and_nothing_written_outside(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An intent.yaml that is a symlink (here to a file outside the repository) is refused
    before anything is written: publish never writes through a link."""
    outside = tmp_path / "outside.yaml"
    intent = fleet.work / INTENT
    outside.write_bytes(intent.read_bytes())
    intent.unlink()
    intent.symlink_to(outside)
    fleet.commit("intent.yaml behind a symlink")
    before = snapshot(fleet), outside.read_bytes()
    code, _, err = run(fleet, capsys, "--id", "sym-1", "-m", "through a link?")
    assert code == 2
    assert f"{INTENT}: a symlink; sites refuse symlinks" in err
    assert (snapshot(fleet), outside.read_bytes()) == before


def test_dry_run_diff_of_a_secret_shows_no_values(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """The dry-run diff of a file holding a Secret has no context lines: the stamped line
    shows, the Secret's values never do."""
    fleet.write(f"{SITE_DIR}/manifests/40-secret.yaml", (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: sfo-ran\n"
        "  annotations:\n    reconciler.dev/intent-id: sfo-baseline-1\n"
        "stringData:\n  password: hunter2-very-secret\n"))
    fleet.commit("a secret")
    code, out, _ = run(fleet, capsys, "--id", "sec-1", "-m", "rotate", "--dry-run")
    assert code == 0
    assert "+    reconciler.dev/intent-id: sec-1\n" in out
    assert "hunter2" not in out
    code, out, _ = run(fleet, capsys, "--id", "sec-1", "-m", "rotate", "--dry-run", "-o", "json")
    assert code == 0 and "hunter2" not in out


# --- publish checks first (#10) -------------------------------------------------------------


def test_a_revision_every_site_would_refuse_is_not_committed_and_all_its_findings_named(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """Publish runs the site's own checks on the stamped revision before committing: a
    file that is not YAML and a manifest without a name are both named, with file and
    line, exit 1, nothing is committed and every file is as it was."""
    fleet.write(f"{SITE_DIR}/manifests/40-broken.yaml", "apiVersion: v1\nkind: ConfigMap\n"
                "metadata: {name: a, namespace: sfo-ran\n")
    fleet.write(f"{SITE_DIR}/manifests/41-nameless.yaml", "apiVersion: v1\nkind: ConfigMap\n"
                "metadata:\n  namespace: sfo-ran\n")
    fleet.commit_and_push("two broken manifests")
    before = snapshot(fleet)
    code, out, err = run(fleet, capsys, "-m", "broken")
    assert (code, out) == (1, "")
    assert "cannot publish edge-sfo-01: 1 file(s) cannot be stamped" in err
    assert f"{SITE_DIR}/manifests/40-broken.yaml:4:1: invalid YAML" in err
    assert "the site would refuse the revision for (1 finding(s))" in err
    assert f"{SITE_DIR}/manifests/41-nameless.yaml:3:1: error" in err
    assert "metadata.name is required" in err and "nothing was written" in err
    assert snapshot(fleet) == before


def test_a_stamped_revision_a_site_would_refuse_is_not_committed(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """A revision that stamps fine but that the site would still refuse (a manifest
    without a name, a wave that is not a number) is checked after stamping: both findings
    are named, exit 1, nothing is committed and every file is as it was."""
    fleet.write(f"{SITE_DIR}/manifests/40-nameless.yaml", "apiVersion: v1\nkind: ConfigMap\n"
                "metadata:\n  namespace: sfo-ran\n")
    fleet.write(f"{SITE_DIR}/manifests/41-wave.yaml", "apiVersion: v1\nkind: ConfigMap\n"
                "metadata:\n  name: w\n  namespace: sfo-ran\n  annotations:\n"
                "    reconciler.dev/wave: soon\n")
    fleet.commit_and_push("two manifests a site refuses")
    before = snapshot(fleet)
    code, out, err = run(fleet, capsys, "-m", "refused")
    assert (code, out) == (1, "")
    assert "site edge-sfo-01 would refuse this revision (2 finding(s))" in err
    assert f"{SITE_DIR}/manifests/40-nameless.yaml:" in err and "[required-field]" in err
    assert f"{SITE_DIR}/manifests/41-wave.yaml:" in err and "[wave]" in err
    assert "nothing was committed, and the files and the index are as they were" in err
    assert snapshot(fleet) == before


def test_a_review_finding_alone_does_not_stop_publish(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """A finding a site does not refuse (a namespaced kind without a namespace: sync
    defaults it) is validate's business, not a reason to refuse to publish."""
    fleet.write(f"{SITE_DIR}/manifests/40-defaulted.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: defaulted}\n")
    fleet.commit_and_push("a ConfigMap without a namespace")
    code, _, err = run(fleet, capsys, "--id", "upf-2-4", "-m", "defaulted")
    assert code == 0, err
    assert ids_at(fleet) == {"upf-2-4"}


def test_a_crd_carrying_an_intent_id_is_not_committed(
        fleet: gitrepo.GitRemote, capsys: pytest.CaptureFixture[str]) -> None:
    """A document of crds/ (shared by every site, outside the fence) that carries an intent
    id is a revision every site refuses: publish names the file and where to move it, exit
    1, and nothing is committed."""
    path = "crds/workloadclusters.telco.example.com.yaml"
    head, tail = fleet.read(path).split("metadata:\n", 1)
    fleet.write(path, f"{head}metadata:\n  annotations:\n"
                f"    reconciler.dev/intent-id: stale-intent\n{tail}")
    fleet.commit_and_push("a CRD tagged with an intent id")
    before = snapshot(fleet)
    code, out, err = run(fleet, capsys, "-m", "tagged CRD")
    assert (code, out) == (1, "")
    assert f"{path}:" in err and "[crd-intent-id]" in err
    assert "move the document under sites/<site>/manifests/" in err
    assert snapshot(fleet) == before
