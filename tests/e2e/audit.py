"""A real kube-apiserver's audit log read as the local cluster's request log.

The same end-to-end assertions ("no request carried the old intent after the new one was
accepted") then hold on both clusters. The apiserver writes one JSON event per request
(`--audit-log-path`, policy in POLICY); requests of the controller manager and the
apiserver's own are not audited, as the local cluster has neither.
"""

from __future__ import annotations

import datetime
import json
import urllib.parse
from pathlib import Path
from typing import Any

from reconciler import contract
from reconciler.localcluster import requestlog

# Writes carry their body (level Request) so the intent id can be read; reads only
# their metadata. The controller manager's requests are left out, and so are the
# apiserver's own (it renews its identity lease every ten seconds): the local cluster has
# neither, and a test asking "did anything write?" means the reconciler.
POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:kube-controller-manager", "system:apiserver"]
  - level: Request
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: Metadata
"""

KINDS = {
    "namespaces": "Namespace", "configmaps": "ConfigMap", "secrets": "Secret",
    "serviceaccounts": "ServiceAccount", "services": "Service", "deployments": "Deployment",
    "customresourcedefinitions": "CustomResourceDefinition",
    "workloadclusters": "WorkloadCluster", "networkfunctions": "NetworkFunction",
}


def read(path: Path) -> list[requestlog.RequestRecord]:
    """Every completed request in the audit log, oldest first."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("stage") not in ("ResponseComplete", "Panic"):
            continue
        records.append(_record(event))
    return sorted(records, key=lambda r: r.time)


def _record(event: dict[str, Any]) -> requestlog.RequestRecord:
    uri = urllib.parse.urlsplit(event.get("requestURI", ""))
    query = urllib.parse.parse_qs(uri.query)
    ref = event.get("objectRef") or {}
    body = event.get("requestObject") or {}
    metadata = body.get("metadata") if isinstance(body, dict) else None
    annotations = (metadata or {}).get("annotations") or {}
    received = datetime.datetime.fromisoformat(
        event["requestReceivedTimestamp"].replace("Z", "+00:00"))
    # The stage the event records (ResponseComplete, or Panic): when the server answered.
    handled = datetime.datetime.fromisoformat(
        (event.get("stageTimestamp") or event["requestReceivedTimestamp"]).replace("Z", "+00:00"))
    verb = event.get("verb", "")
    # The audit log does not keep the patch's content type; the reconciler sends only
    # server-side apply patches, which always carry a fieldManager.
    patch_type = "apply" if verb == "patch" and "fieldManager" in query else (
        "merge" if verb == "patch" else None)
    return requestlog.RequestRecord(
        time=received.timestamp(),
        handled=handled.timestamp(),
        verb=verb,
        patch_type=patch_type,
        path=uri.path,
        kind=KINDS.get(ref.get("resource", ""), ref.get("resource")),
        namespace=ref.get("namespace"),
        name=ref.get("name"),
        intent_id=annotations.get(contract.ANNOTATION_INTENT_ID),
        dry_run="All" in query.get("dryRun", []),
        status=int((event.get("responseStatus") or {}).get("code") or 0),
    )
