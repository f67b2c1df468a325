"""Every case of the hostile-input corpus (tests/hostile) is refused by the checks sync runs
before its first write: bundle.load() and schemas.check_bundle(), over a real Git commit."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from reconciler import contract, errors
from reconciler.repo import bundle, documents, guard, schemas
from reconciler.repo import tree as trees
from reconciler.site import rollout
from tests import fakes, gitrepo, sites
from tests.hostile import cases


@dataclasses.dataclass
class Repo:
    """A work tree holding the sample repository at commit `base`."""

    work: Path
    base: str

    def commit(self, case: cases.Case, *, intent_id: str) -> git.Commit:
        """The sample at `base`, restamped to `intent_id`, with the case's files on top."""
        gitrepo.git("reset", "-q", "--hard", self.base, cwd=self.work)
        gitrepo.git("clean", "-fdqx", cwd=self.work)
        cases.restamp(self.work, intent_id=intent_id)
        cases.write(self.work, case, intent_id=intent_id)
        gitrepo.git("add", "-A", cwd=self.work)
        gitrepo.git("commit", "-qm", f"hostile: {case.name}", cwd=self.work)
        return git.Repo(self.work).commit(gitrepo.git("rev-parse", "HEAD", cwd=self.work))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    work = tmp_path_factory.mktemp("hostile") / "work"
    work.mkdir()
    gitrepo.git("init", "-q", "--initial-branch=main", ".", cwd=work)
    shutil.copytree(contract.sample_repo_dir(), work, dirs_exist_ok=True)
    gitrepo.git("add", "-A", cwd=work)
    gitrepo.git("commit", "-qm", "baseline", cwd=work)
    yield Repo(work=work, base=gitrepo.git("rev-parse", "HEAD", cwd=work))


def refusal(commit: git.Commit) -> tuple[str, list[str], str]:
    """How the checks sync runs before any write end for `commit`: the error's message and
    findings, or the manifests folder's state when the pipeline's prune guard decides."""
    try:
        loaded = bundle.load(tree=trees.GitTree(commit), site=cases.SITE)
    except errors.ValidationError as exc:
        return str(exc), list(exc.findings), ""
    except errors.ReconcilerError as exc:
        return str(exc), [], ""
    findings = schemas.check_bundle(loaded)
    if findings:
        found = errors.ValidationError("; ".join(map(str, findings)),
                                       findings=[str(f) for f in findings])
        return str(found), list(found.findings), ""
    return "", [], loaded.manifests_missing


def test_the_corpus_has_at_least_sixty_cases_with_distinct_names() -> None:
    """The corpus holds at least 60 cases, each named once, each described in a sentence."""
    names = [case.name for case in cases.CASES]
    assert len(names) >= 60 and len(set(names)) == len(names)
    assert all(case.description.endswith(".") for case in cases.CASES)


def test_the_readme_lists_every_case_with_its_rule() -> None:
    """tests/hostile/README.md has one row per case, naming its rule."""
    readme = (Path(cases.__file__).parent / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \|[^|]*\| (.*) \|$", readme, re.MULTILINE))
    assert sorted(rows) == sorted(case.name for case in cases.CASES)


@pytest.mark.parametrize("case", cases.CASES, ids=[case.name for case in cases.CASES])
def test_hostile_case_is_refused_naming_the_file_and_the_rule(repo: Repo,
                                                               case: cases.Case) -> None:
    """The revision is refused before any write, naming the file and the rule, with no
    secret value and no control character in the message."""
    message, findings, missing = refusal(repo.commit(case, intent_id="sfo-hostile-2"))
    if case.layer == "pipeline":
        assert message == "" and missing and missing in case.rule
        return
    if case.layer == "cluster":  # tests/e2e/test_hostile.py sees it refused
        assert message == ""
        return
    assert message, f"{case.name} was not refused"
    assert case.rule in message, message[:2000]
    assert case.file in message, message[:2000]
    for text in (message, *findings):
        assert errors.printable(text) == text  # no newline, no escape: one inert line
        if case.secret:
            assert case.secret not in text


# --- What the rules let through: real manifests must never trip them. -----------------

VALID = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:controller:sfo-upf
  labels:
    app.kubernetes.io/name: upf
    empty: ""
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"a": 1}'
    example.com/note: "any text: values are free"
---
apiVersion: v1
kind: Service
metadata: {name: sfo-upf, namespace: sfo-ran}
---
apiVersion: telco.example.com/v1alpha1
kind: NetworkFunction
metadata: {name: sfo-upf.v2, namespace: sfo-ran}
"""


def test_names_kubernetes_accepts_are_accepted() -> None:
    """An RBAC name with colons, a Service label, a dotted custom resource name and
    well-known qualified keys pass every name rule."""
    docs = bundle.parse_documents(VALID.encode(), file="ok.yaml")
    for location, doc in docs:
        found = [f for f in schemas.check_manifest(documents.Manifest(location, doc))
                 if f.rule != "schema"]
        assert found == []


@pytest.mark.parametrize(("depth", "refused"), [(200, False), (201, True)])
def test_depth_limit_is_exact_at_200_levels(depth: int, refused: bool) -> None:
    """A document nesting 200 levels is read; one nesting 201 is refused naming the line."""
    data = b"a: " + b"[" * (depth - 1) + b"]" * (depth - 1) + b"\n"
    if refused:
        with pytest.raises(guard.NestingError, match=r"^d\.yaml:1: YAML nests deeper than "
                                                     r"200 levels \(rule: max-depth"):
            bundle.parse_documents(data, file="d.yaml")
    else:
        assert bundle.parse_documents(data, file="d.yaml")


def test_real_manifests_pass_the_depth_check() -> None:
    """Every manifest of the test corpus and the sample passes the depth check; most are
    vouched for by fits() alone, without reading their events."""
    root = Path(__file__).resolve().parents[1] / "corpus"
    files = [*root.rglob("*.yaml"), *contract.sample_repo_dir().rglob("*.yaml")]
    assert len(files) > 50
    limit = bundle.Limits().max_depth
    for path in files:
        guard.check_depth(path.read_bytes(), file=str(path), max_depth=limit)
    vouched = [path for path in files if guard.fits(path.read_bytes(), max_depth=limit)]
    assert len(vouched) > len(files) * 3 // 4


@pytest.mark.parametrize("data", [
    b'a: ' + b'[ "]", ' * 30_000 + b'x' + b']' * 30_000,  # quotes hide closing brackets
    b"# ]]]]\n" * 1000 + b"a: " + b"[" * 30_000 + b"]" * 30_000,  # and so do comments
    b"? " * 30_000 + b"x\n",  # explicit keys
], ids=["quoted-brackets", "commented-brackets", "explicit-keys"])
def test_depth_check_cannot_be_fooled_by_quotes_or_comments(data: bytes) -> None:
    """Brackets in quotes or comments do not hide real nesting from the depth check."""
    assert not guard.fits(data, max_depth=200)
    with pytest.raises(guard.NestingError):
        guard.check_depth(data, file="f.yaml", max_depth=200)


# --- The whole revision before the first write, through the pipeline (our Cluster faked). --

WRITES = {"apply", "patch", "create", "update", "delete"}
PIPELINE_CASES = ("unknown-kind", "unknown-group", "list-bad-item", "name-newline",
                  "depth-600-block", "manifests-submodule", "duplicate-key-secret")


@pytest.mark.parametrize("name", PIPELINE_CASES)
def test_a_bad_object_in_a_late_wave_stops_the_revision_before_wave_0(
        tmp_path: Path, remote: gitrepo.GitRemote, name: str) -> None:
    """A new intent whose wave-30 object is bad is refused before any write: wave 0 (the
    Namespace, the ConfigMap) is not applied either, and the accepted intent stays."""
    env = sites.Env(tmp_path, remote)
    assert env.sync().ok
    before = len(env.cluster.calls)
    case = cases.by_name(name)
    cases.restamp(remote.work, intent_id="sfo-hostile-2")
    cases.write(remote.work, case, intent_id="sfo-hostile-2")
    remote.commit_and_push(f"hostile: {name}")
    result = env.sync()
    assert not result.ok
    assert case.rule in result.message and case.file in result.message
    assert [call for call in env.cluster.calls[before:] if call[0] in WRITES] == []
    record = env.store.load()
    assert record.accepted is not None and record.accepted.id == "sfo-baseline-1"
    if case.secret:
        assert case.secret not in env.store.path.read_text(encoding="utf-8")


def test_kinds_a_crd_of_the_revision_defines_are_known() -> None:
    """check_kinds() lets through the kinds the revision's own CRDs define and the kinds
    the cluster serves, and names each unknown one with its rule."""
    loaded = bundle.load(tree=trees.DirTree(contract.sample_repo_dir()), site=cases.SITE)
    target = fakes.FakeCluster()
    rollout.check_kinds(target=target, crds=loaded.crds, manifests=loaded.manifests)
    with pytest.raises(errors.ValidationError, match=r"1 kind\(s\) unknown, nothing "
                       r"applied: .*NetworkFunction.*\[unknown-kind\]"):
        rollout.check_kinds(target=target, crds=(), manifests=loaded.manifests[2:3])
    assert ("discovery", "") in target.calls  # read again before calling a kind unknown
