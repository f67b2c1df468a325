"""The corpus of real manifests (tests/corpus), server-side applied with kubectl to the
embedded local cluster and to a real kube-apiserver: each object accepted or refused
alike, and each accepted one stored alike (issue #10, item 8).

Every difference left is listed in ALLOWED with its reason; anything else fails.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import re
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import tests.kube
from reconciler import cluster as ports
from reconciler import kube
from reconciler.repo import bundle
from tests.e2e.conftest import ClusterUnderTest, kubectl_run

pytestmark = pytest.mark.e2e

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
MANAGER = "corpus"

# Differences between the clusters' stored objects that are not ours to remove, by kind
# ("*" for any) and field path (`[*]` for any list item): what each cluster allocates
# or what the real cluster's controllers write.
ALLOWED: dict[tuple[str, str], str] = {
    ("Service", "spec.clusterIP"): "each cluster allocates its own address",
    ("Service", "spec.clusterIPs"): "each cluster allocates its own address",
    ("Service", "spec.ports[*].nodePort"): "each cluster allocates a random node port",
    ("Service", "spec.healthCheckNodePort"): "each cluster allocates a random node port",
}
# Annotations the real cluster's controllers write, left out of the comparison.
CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)


@dataclasses.dataclass(frozen=True)
class Document:
    """One object of the corpus: where it comes from and its body."""

    file: str  # relative to tests/corpus
    index: int  # its place in the file (List items flattened)
    body: Mapping[str, Any]

    @property
    def label(self) -> str:
        meta = self.body.get("metadata") or {}
        where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
        return f"{self.body.get('kind')}/{where}{meta.get('name')} ({self.file}#{self.index})"


def corpus() -> list[Document]:
    """Every object of every corpus file, read as kubectl reads them, Lists expanded;
    Namespaces first, then CRDs, then the rest in file order."""
    found: list[Document] = []
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or path.name in ("PROVENANCE", "README.md"):
            continue
        name = str(path.relative_to(CORPUS))
        limits = bundle.Limits(max_documents=10_000, max_nodes=100_000_000)
        index = 0
        for location, doc in bundle.parse_documents(path.read_bytes(), file=name,
                                                    limits=limits):
            for manifest in bundle.list_items(doc, location=location):
                found.append(Document(file=name, index=index, body=dict(manifest.body)))
                index += 1

    def phase(doc: Document) -> int:
        kind = doc.body.get("kind")
        return 0 if kind == "Namespace" else 1 if kind == "CustomResourceDefinition" else 2

    return sorted(found, key=phase)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What applying one object did: accepted, or refused with the server's reason."""

    accepted: bool
    reason: str  # "" when accepted; the Status reason, or kubectl's own error
    message: str


_REASON = re.compile(r"^Error from server \((\w+)\)")


def outcome_of(done: subprocess.CompletedProcess[str]) -> Outcome:
    """An Outcome from kubectl's exit code and its first line of errors."""
    if done.returncode == 0:
        return Outcome(accepted=True, reason="", message="")
    line = next((x for x in done.stderr.splitlines() if x.strip()), "")
    match = _REASON.match(line)
    if match:
        reason = match.group(1)
    elif re.match(r'^The \S+ "[^"]*" is invalid', line):
        reason = "Invalid"  # kubectl's wording of a 422 Invalid Status
    elif line.startswith("Error from server:"):
        reason = "InternalError"  # a Status without a reason: the typed-patch 500
    elif "resource mapping not found" in line:
        reason = "NoKindMatch"  # kubectl's own: the cluster does not serve the kind
    else:
        reason = "kubectl"
    return Outcome(accepted=False, reason=reason, message=line)


def identity(body: Mapping[str, Any]) -> str:
    """apiVersion, kind, namespace and name: which object a document writes."""
    meta = body.get("metadata") or {}
    return f"{body.get('apiVersion')}/{body.get('kind')}/{meta.get('namespace')}/{meta.get('name')}"


def apply_all(target: ClusterUnderTest, docs: Sequence[Document],
              workdir: Path) -> dict[str, Outcome]:
    """kubectl apply --server-side each object, phase by phase; their outcomes by label.
    The CRDs must be established before their custom resources are applied."""
    outcomes: dict[str, Outcome] = {}
    workdir.mkdir(parents=True, exist_ok=True)

    def one(doc: Document) -> tuple[str, Outcome]:
        path = workdir / f"{abs(hash(doc.label))}.json"
        path.write_text(json.dumps(doc.body))
        done = kubectl_run(target, "apply", "--server-side", f"--field-manager={MANAGER}",
                           "-f", str(path))
        outcome = outcome_of(done)
        # kubectl names the file it read: the same name under another folder.
        return doc.label, dataclasses.replace(
            outcome, message=outcome.message.replace(str(workdir), "<dir>"))

    def in_order(group: list[Document]) -> list[tuple[str, Outcome]]:
        return [one(doc) for doc in group]

    for kinds in (("Namespace",), ("CustomResourceDefinition",), None):
        # Documents of one object (two files may write it) go in corpus order, one after
        # the other; different objects in parallel.
        batch: dict[str, list[Document]] = {}
        for doc in docs:
            kind = doc.body.get("kind")
            if (kind in kinds) if kinds else kind not in ("Namespace",
                                                          "CustomResourceDefinition"):
                batch.setdefault(identity(doc.body), []).append(doc)
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            for results in pool.map(in_order, batch.values()):
                outcomes.update(results)
        if kinds == ("CustomResourceDefinition",):
            # A CRD just created has no conditions yet, which `kubectl wait` takes for an
            # error: ask again until each one is Established.
            deadline = time.monotonic() + 60
            while (done := kubectl_run(target, "wait", "--for=condition=Established",
                                       "--timeout=30s", "customresourcedefinitions",
                                       "--all")).returncode != 0:
                assert time.monotonic() < deadline, done.stderr
                time.sleep(0.2)
    return outcomes


def stored(target: ClusterUnderTest, docs: Sequence[Document],
           outcomes: Mapping[str, Outcome]) -> dict[str, dict[str, Any]]:
    """The stored object of each accepted document, by label, read through the adapter."""
    adapter = kube.connect(kubeconfig=target.direct_kubeconfig)
    out: dict[str, dict[str, Any]] = {}
    try:
        for doc in docs:
            if not outcomes[doc.label].accepted:
                continue
            ref = ports.ObjectRef.of(doc.body)
            resource = adapter.resource(api_version=ref.api_version, kind=ref.kind)
            if resource.namespaced and ref.namespace is None:
                ref = dataclasses.replace(ref, namespace="default")
            found = adapter.get(ref)
            assert found is not None, f"{doc.label} was accepted but is not stored"
            out[doc.label] = found
    finally:
        adapter.close()
    return out


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object without what differs between any two servers: uid, resourceVersion,
    creationTimestamp, managedFields times and the entries of status writers, and status
    (what controllers write), except a CRD's accepted names and stored versions."""
    uid = str((obj.get("metadata") or {}).get("uid") or "<none>")
    # The uid is in the object too, in a Job's selector and labels.
    out = json.loads(json.dumps(obj).replace(uid, "<uid>"))
    meta = out.get("metadata") or {}
    for key in ("uid", "resourceVersion", "creationTimestamp"):
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    for key in CONTROLLER_ANNOTATIONS:
        annotations.pop(key, None)
    if not annotations:
        meta.pop("annotations", None)
    meta["managedFields"] = [
        {k: v for k, v in entry.items() if k != "time"}
        for entry in meta.get("managedFields") or [] if entry.get("subresource") != "status"
    ]
    status = out.pop("status", None)
    if out.get("kind") == "CustomResourceDefinition" and isinstance(status, dict):
        out["status"] = {k: status.get(k) for k in ("acceptedNames", "storedVersions")}
    return out


def differences(local: Any, real: Any, path: str = "") -> Iterator[str]:
    """The paths at which two JSON values differ (`spec.ports[0].nodePort`)."""
    if isinstance(local, dict) and isinstance(real, dict):
        for key in sorted(set(local) | set(real)):
            yield from differences(local.get(key, _ABSENT), real.get(key, _ABSENT),
                                   f"{path}.{key}" if path else key)
    elif isinstance(local, list) and isinstance(real, list) and len(local) == len(real):
        for index, (a, b) in enumerate(zip(local, real, strict=True)):
            yield from differences(a, b, f"{path}[{index}]")
    elif local != real:
        yield path


_ABSENT = "<absent>"


def allowed(kind: str, path: str) -> bool:
    """Whether ALLOWED lists a difference."""
    general = re.sub(r"\[\d+\]", "[*]", path)
    return any(k in (kind, "*") and (general == p or general.startswith((p + ".", p + "[")))
               for k, p in ALLOWED)


def cleanup(target: ClusterUnderTest, docs: Sequence[Document],
            outcomes: Mapping[str, Outcome]) -> None:
    """Delete what the corpus made, newest first, without waiting: it shares the real
    cluster with the rest of the session (an APIService whose backend never answers
    would leave a group unavailable for every later test)."""
    for doc in reversed(docs):
        if outcomes.get(doc.label, Outcome(False, "", "")).accepted:
            path = target.direct_kubeconfig.parent / "delete.json"  # type: ignore[union-attr]
            path.write_text(json.dumps(doc.body))
            kubectl_run(target, "delete", "--wait=false", "--ignore-not-found", "-f", str(path))


@pytest.fixture
def real_target(real_cluster: tests.kube.RealCluster) -> ClusterUnderTest:
    """The session's real cluster, reached directly."""
    return ClusterUnderTest(name="real", kubeconfig=real_cluster.kubeconfig)


def test_corpus_is_applied_alike_on_the_local_and_the_real_cluster(
        local_cluster: ClusterUnderTest, real_target: ClusterUnderTest, tmp_path: Path) -> None:
    """Each corpus object is accepted or refused for the same reason by both clusters, and
    each accepted one is stored alike, but for the differences ALLOWED names."""
    docs = corpus()
    assert len({d.label for d in docs}) == len(docs)
    results: dict[str, tuple[dict[str, Outcome], dict[str, dict[str, Any]]]] = {}
    for target in (local_cluster, real_target):
        outcomes: dict[str, Outcome] = {}
        try:
            started = time.monotonic()
            outcomes = apply_all(target, docs, tmp_path / target.name)
            results[target.name] = (outcomes, stored(target, docs, outcomes))
            print(f"{target.name}: {len(docs)} objects in {time.monotonic() - started:.1f}s")
        finally:
            if target is real_target:
                cleanup(target, docs, outcomes)
    (local_outcomes, local_objects), (real_outcomes, real_objects) = (
        results["local"], results["real"])

    unlike_outcomes = [f"{label}: local {local_outcomes[label]}, real {real_outcomes[label]}"
                       for label in sorted(local_outcomes)
                       if local_outcomes[label] != real_outcomes[label]]
    assert not unlike_outcomes, "outcomes differ:\n" + "\n".join(unlike_outcomes)
    # Refused alike: kustomize's and kpt's own files (no cluster serves their kinds), a
    # kustomize base's Deployment (its selector comes from the overlay), and an object
    # of a namespace that kpt, not the package, makes.
    assert collections.Counter((label.split("/")[0], o.reason)
                               for label, o in real_outcomes.items() if not o.accepted) == {
        ("Kptfile", "NoKindMatch"): 1, ("Kustomization", "NoKindMatch"): 2,
        ("Deployment", "Invalid"): 1, ("ConfigMap", "NotFound"): 1}

    unlike = []
    for label, real in sorted(real_objects.items()):
        local = local_objects[label]
        kind = str(real.get("kind"))
        for path in differences(comparable(local), comparable(real)):
            if not allowed(kind, path):
                unlike.append(f"{label}: {path}: local {_at(local, path)!r}, "
                              f"real {_at(real, path)!r}")
    assert not unlike, "stored objects differ:\n" + "\n".join(unlike)


def _at(obj: Any, path: str) -> Any:
    """The value at a `differences()` path, for the message."""
    value = obj
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("[") and isinstance(value, list):
            index = int(part[1:-1])
            value = value[index] if index < len(value) else _ABSENT
        elif isinstance(value, dict):
            value = value.get(part, _ABSENT)
        else:
            return _ABSENT
    return value
