"""Custom resources checked against the CRDs found in the repository. Called by lint.

A CRD's `openAPIV3Schema` is what the API server enforces, and server-side apply is
stricter than the schema reads: a field the schema does not declare (outside an
`x-kubernetes-preserve-unknown-fields` subtree) fails the whole apply. So the schema is
turned into a JSON Schema that says so (`additionalProperties: false` wherever properties
are declared), with OpenAPI's `nullable` and `x-kubernetes-int-or-string` spelled out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
import referencing.exceptions

from reconciler.repo import documents, schemas

RULE = "crd-schema"


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`)."""
    group, _, version = api_version.rpartition("/")
    return group, version


@dataclasses.dataclass(frozen=True)
class Served:
    """One version of a kind as a CRD in the repository defines it."""

    crd: str  # the CRD's name, e.g. networkfunctions.telco.example.com
    group: str
    version: str
    kind: str
    namespaced: bool
    schema: Mapping[str, Any] | None
    location: documents.Location


class Catalog:
    """Every kind the repository's CRDs define, and a validator per served version."""

    def __init__(self) -> None:
        self._served: dict[tuple[str, str], dict[str, Served]] = {}
        self._validators: dict[tuple[str, str, str], jsonschema.protocols.Validator | None] = {}
        self._broken: dict[tuple[str, str, str], str] = {}

    def add(self, manifest: documents.Manifest) -> None:
        """Record the kinds a CRD manifest serves; a malformed CRD is skipped (the CRD's own
        schema check reports it)."""
        for kind in documents.served_kinds(manifest):
            served = Served(crd=manifest.name, group=kind.group, version=kind.version,
                            kind=kind.kind, namespaced=kind.namespaced, schema=kind.schema,
                            location=manifest.location)
            self._served.setdefault((kind.group, kind.kind), {})[kind.version] = served

    def defines(self, *, group: str, kind: str) -> bool:
        return (group, kind) in self._served

    def namespaced(self, *, group: str, kind: str) -> bool | None:
        """Whether the kind is namespaced; None when no CRD here defines it."""
        versions = self._served.get((group, kind))
        return next(iter(versions.values())).namespaced if versions else None

    def check(self, manifest: documents.Manifest) -> list[schemas.Finding]:
        """The manifest against its CRD: a served version, and the version's schema."""
        group, version = split_api_version(manifest.api_version)
        versions = self._served.get((group, manifest.kind), {})
        served = versions.get(version)
        obj = manifest.describe()
        if served is None:
            return [schemas.Finding(
                location=manifest.location, path="$.apiVersion", keys=("apiVersion",),
                rule="crd-version", object=obj,
                message=f"no CRD in the repository serves {manifest.kind} in "
                        f"{manifest.api_version} (served: "
                        f"{', '.join(f'{group}/{v}' for v in sorted(versions)) or 'none'})")]
        if served.schema is None:
            return []
        key = (group, version, manifest.kind)
        if key not in self._validators:
            try:
                self._validators[key] = _validator(served.schema)
            except jsonschema.SchemaError as exc:
                self._validators[key] = None
                self._broken[key] = f"{exc.message} at {schemas.json_path(exc.absolute_path)}"
        validator = self._validators[key]
        prefix = f"(CRD {served.crd}, {version}) "
        if validator is None:
            return [schemas.Finding(
                location=manifest.location, path="$", rule=RULE, object=obj,
                severity=schemas.Severity.WARNING,
                message=f"{prefix}not checked: the CRD's openAPIV3Schema is not a schema "
                        f"this tool can use ({self._broken[key]})")]
        try:
            if validator.is_valid(manifest.body):
                return []
            return schemas.findings_of(validator, manifest.body, location=manifest.location,
                                        rule=RULE, obj=obj, prefix=prefix)
        except (referencing.exceptions.Unresolvable,
                re.error, RecursionError) as exc:
            return [schemas.Finding(
                location=manifest.location, path="$", rule=RULE, object=obj,
                severity=schemas.Severity.WARNING,
                message=f"{prefix}not checked: its schema cannot be applied here "
                        f"({type(exc).__name__}: {exc})")]


def _validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A validator for the structural schema; SchemaError when it is not a valid schema."""
    structural = to_json_schema(schema, root=True)
    jsonschema.Draft4Validator.check_schema(structural)
    for pattern in _patterns(structural):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise jsonschema.SchemaError(f"pattern {pattern!r} is not a regular expression "
                                         f"({exc})") from exc
    return jsonschema.Draft4Validator(structural)


def _patterns(schema: Any) -> list[str]:
    found: list[str] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            if isinstance(node.get("pattern"), str):
                found.append(node["pattern"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def to_json_schema(schema: Mapping[str, Any], *, root: bool = False) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as the JSON Schema the API server effectively applies."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()
                        if isinstance(sub, Mapping)}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [to_json_schema(sub) for sub in value if isinstance(sub, Mapping)]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format", "description",
                                                         "example", "externalDocs"):
            continue  # handled below, or documentation only
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif isinstance(out.get("anyOf"), list):
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    if root or schema.get("x-kubernetes-embedded-resource") is True:
        # apiVersion, kind and metadata belong to every object (and to an embedded one);
        # the server checks metadata itself.
        properties = out.setdefault("properties", {})
        for name in ("apiVersion", "kind"):
            properties.setdefault(name, {"type": "string"})
        properties["metadata"] = {"type": "object"}
        if root:
            properties.setdefault("status", {})
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out
