"""A minimal OpenAPI v3 description of the served paths, enough for kubectl's checks.

kubectl (v1.32) reads /openapi/v3 before an apply, create or diff to learn whether the server
validates fields itself (the `fieldValidation` query parameter of each kind's PATCH operation);
finding it, kubectl leaves validation to the server and needs no schemas. Called by `api`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from reconciler.localcluster import resources

_QUERY = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _gv_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _parameters(names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for n in names]


def _operation(rtype: resources.ResourceType, action: str, *,
               params: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "operationId": f"{action}{rtype.kind}",
        "parameters": _parameters(params),
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rtype.group, "version": rtype.version,
                                            "kind": rtype.kind},
    }


def group_version(registry: resources.Registry, *, group: str, version: str
                  ) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group version, or None when it is not served."""
    types = registry.resources(group=group, version=version)
    if not types:
        return None
    paths: dict[str, Any] = {}
    base = f"/{_gv_key(group, version)}"
    for t in types:
        prefix = f"{base}/namespaces/{{namespace}}/{t.plural}" if t.namespaced \
            else f"{base}/{t.plural}"
        paths[prefix] = {"get": _operation(t, "list"),
                         "post": _operation(t, "post", params=("dryRun", "fieldManager",
                                                               "fieldValidation"))}
        item = {
            "get": _operation(t, "get"),
            "put": _operation(t, "put", params=("dryRun", "fieldManager", "fieldValidation")),
            "patch": _operation(t, "patch", params=_QUERY),
            "delete": _operation(t, "delete", params=("dryRun",)),
        }
        paths[f"{prefix}/{{name}}"] = item
        if t.has_status:
            paths[f"{prefix}/{{name}}/status"] = {
                "get": _operation(t, "get"),
                "put": _operation(t, "put", params=("dryRun", "fieldManager", "fieldValidation")),
                "patch": _operation(t, "patch", params=_QUERY),
            }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def index(registry: resources.Registry) -> dict[str, Any]:
    """GET /openapi/v3: each group version's document, addressed by a content hash."""
    paths: dict[str, Any] = {}
    served = sorted({(t.group, t.version) for t in registry.types})
    for group, version in served:
        doc = group_version(registry, group=group, version=version)
        digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:128]
        key = _gv_key(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest.upper()}"}
    return {"paths": paths}


# GET /openapi/v2, which kubectl reads (as protobuf only) to validate a kind /openapi/v3
# does not describe: an empty openapi_v2.Document, whose protobuf encoding is no bytes.
# Finding no schema there either, kubectl leaves the kind to the server, which says
# whether it serves it (`no matches for kind`), as a real server's answer leads it to.
SWAGGER_PROTOBUF = b""
SWAGGER_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
