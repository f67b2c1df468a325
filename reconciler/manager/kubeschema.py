"""Built-in Kubernetes kinds checked against the API's own schemas. Called by lint.

The schemas come from the `kubernetes-validate` package, one set per Kubernetes minor
release. Its strict variant is used: server-side apply refuses a field the type does not
declare, so an unknown field is an error here too. Validators are built once per kind
(the package's own `validate()` re-reads the schema files for every object, far too slow
for thousands of manifests).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema
import referencing
from kubernetes_validate import utils as kv

from reconciler import kubekinds
from reconciler.manager import crdschema
from reconciler.repo import documents, schemas

RULE = "kube-schema"

# Moved to reconciler.kubekinds, which the adapter and the local cluster's tests share.
CLUSTER_SCOPED = kubekinds.CLUSTER_SCOPED
is_builtin_group = kubekinds.is_builtin_group
namespaced = kubekinds.namespaced

_VERSION_DIR = re.compile(r"^v(\d+\.\d+)\.\d+-local-strict$")


@functools.cache
def versions() -> tuple[str, ...]:
    """The Kubernetes minor versions whose schemas are installed, oldest first."""
    found = {match.group(1) for entry in kv.importlib_resources.files(
        "kubernetes_validate").joinpath("kubernetes-json-schema").iterdir()
        if (match := _VERSION_DIR.match(entry.name))}
    return tuple(sorted(found, key=lambda v: tuple(int(p) for p in v.split("."))))


def resolve_version(requested: str | None) -> str:
    """`1.37` for `None` (the newest), `1.36.2`, `v1.36` or `1.36`; ValueError if missing."""
    if requested is None:
        return versions()[-1]
    match = re.fullmatch(r"v?(\d+\.\d+)(?:\.\d+)?", requested.strip())
    if not match or match.group(1) not in versions():
        raise ValueError(f"no schemas for Kubernetes {requested!r}; installed: "
                         f"{versions()[0]} to {versions()[-1]}")
    return match.group(1)


def check(manifest: documents.Manifest, *, version: str) -> list[schemas.Finding] | None:
    """The manifest against its kind's schema; None when Kubernetes has no such kind."""
    group, api = crdschema.split_api_version(manifest.api_version)
    validator = _validator(version, manifest.kind, group, api)
    if validator is None:
        return None
    try:
        if validator.is_valid(dict(manifest.body)):
            return []
        return schemas.findings_of(validator, dict(manifest.body),
                                    location=manifest.location, rule=RULE,
                                    obj=manifest.describe(), prefix=f"(Kubernetes {version}) ",
                                    redact=schemas.is_secret(manifest.body))
    except RecursionError:
        return [schemas.Finding(
            location=manifest.location, path="$", rule=RULE, object=manifest.describe(),
            severity=schemas.Severity.WARNING,
            message=f"(Kubernetes {version}) not checked: nested too deeply to check")]


@functools.cache
def _validator(version: str, kind: str, group: str,
               api: str) -> jsonschema.protocols.Validator | None:
    folder = f"kubernetes-json-schema/v{version}.0-local-strict"
    prefix = group.split(".")[0]
    name = f"{kind.lower()}-{prefix}-{api}.json" if group else f"{kind.lower()}-{api}.json"
    if not re.fullmatch(r"[A-Za-z0-9]{1,100}", kind) or not re.fullmatch(r"[a-z0-9]+", api):
        return None  # no such file: Kubernetes kinds and versions are short alphanumerics
    try:
        schema = kv.schema_contents(f"{folder}/{name}", version)
    except (FileNotFoundError, NotADirectoryError):
        return None
    declared = schema.get("x-kubernetes-group-version-kind") or []
    if not any(d.get("group") == group and d.get("kind") == kind and d.get("version") == api
               for d in declared):
        return None  # a sub-type's schema, or another group with the same first label
    return jsonschema.Draft202012Validator(schema, registry=_registry(folder))


@functools.cache
def _registry(folder: str) -> referencing.Registry[Any]:
    definitions = kv.schema_contents(f"{folder}/_definitions.json", folder)
    return referencing.Resource.from_contents(definitions) @ referencing.Registry()
