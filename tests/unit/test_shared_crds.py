"""`crds/` is shared by every site and outside the fence: a document there that carries an
intent id is refused by validate, publish and sync (rule `crd-intent-id`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from reconciler import contract
from reconciler.manager import plan, validate
from reconciler.repo import documents, schemas
from tests import gitrepo, sites

CRD_FILE = "crds/workloadclusters.telco.example.com.yaml"
TAG = "  annotations:\n    reconciler.dev/intent-id: stale-intent\n"


def tagged(text: str) -> str:
    """The CRD's text with an intent id added under its metadata."""
    head, tail = text.split("metadata:\n", 1)
    return f"{head}metadata:\n{TAG}{tail}"


def test_check_shared_refuses_an_intent_id_and_says_where_to_move_it() -> None:
    """A crds/ document with an intent id is one finding naming the file, the id and the
    site's manifests folder; one without is none."""
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "annotations": {contract.ANNOTATION_INTENT_ID: "old"}}}
    location = documents.Location(file="crds/x.yaml", document=0, line=1)
    found = schemas.check_shared(documents.Manifest(location=location, body=body),
                                 site="edge-a")
    assert [f.rule for f in found] == ["crd-intent-id"]
    assert "'old'" in found[0].message
    assert "move the document under sites/edge-a/manifests/" in found[0].message
    assert "crds/x.yaml" in str(found[0])
    clean = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    assert schemas.check_shared(documents.Manifest(location=location, body=clean),
                                site="edge-a") == []


def test_validate_reports_a_crd_with_an_intent_id_as_a_rule_sites_refuse(
        tmp_path: Path) -> None:
    """validate finds the tagged CRD, at its line, as an error under a rule in
    SITE_REFUSES (so publish refuses it too)."""
    root = tmp_path / "repo"
    shutil.copytree(contract.sample_repo_dir(), root)
    path = root / CRD_FILE
    path.write_text(tagged(path.read_text()))
    report = validate.run(options=validate.Options(root=root, jobs=1))
    found = [f for f in report.findings if f.rule == "crd-intent-id"]
    assert len(found) == 1
    assert found[0].severity is schemas.Severity.ERROR
    assert found[0].location.file == CRD_FILE
    assert found[0].location.line is not None
    assert "move the document under sites/<site>/manifests/" in found[0].message
    assert "crd-intent-id" in validate.SITE_REFUSES


def test_sync_refuses_the_revision_before_any_write(tmp_path: Path,
                                                    remote: gitrepo.GitRemote) -> None:
    """sync fails at the validate stage naming the file and where to move the document;
    nothing is accepted and the cluster sees no write."""
    env = sites.Env(tmp_path, remote)
    remote.write(CRD_FILE, tagged(remote.read(CRD_FILE)))
    remote.commit_and_push("a CRD tagged with an intent id")
    result = env.sync()
    assert not result.ok
    assert CRD_FILE in result.message and "[crd-intent-id]" in result.message
    assert f"move the document under sites/{sites.SITE}/manifests/" in result.message
    assert [verb for verb, _ in env.cluster.calls if verb not in ("discovery", "get", "list")
            ] == []
    assert env.cluster.objects == {}
    assert env.store.load().accepted is None


def test_plan_reports_a_crd_with_an_intent_id_as_an_error(tmp_path: Path,
                                                          remote: gitrepo.GitRemote) -> None:
    """plan reads a revision through the same check as sync, and names the finding."""
    remote.write(CRD_FILE, tagged(remote.read(CRD_FILE)))
    remote.commit_and_push("a CRD tagged with an intent id")
    made = plan.make(options=plan.Options(url=remote.url, site=sites.SITE,
                                          state_dir=tmp_path / "state",
                                          cache_dir=tmp_path / "cache"), target=None)
    assert made.decision is None
    assert any(CRD_FILE in e and "[crd-intent-id]" in e for e in made.errors)
