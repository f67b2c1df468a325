"""JSON Schema checks of the intent and of manifests. Called by bundle and reconcile.

Every finding names the file, the document, the object and the JSON path of the
offending field, so a user can go straight to the line to fix.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import jsonschema

from reconciler import contract

if TYPE_CHECKING:  # bundle imports this module; the names are only for annotations
    from reconciler import bundle

INTENT_SCHEMA = "intent.schema.json"
_WAVE = re.compile(r"-?[0-9]+")
STATE_SCHEMA = "state.schema.json"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One broken rule in one document."""

    location: bundle.Location
    path: str  # JSON path of the offending field, `$` for the document
    message: str
    rule: str  # e.g. schema, required-field, intent-site
    object: str = ""  # Kind/namespace/name when known

    def short(self) -> str:
        return f"{self.path}: {self.message}"

    def __str__(self) -> str:
        what = f" {self.object}" if self.object else ""
        return f"{self.location}{what}: {self.path}: {self.message} [{self.rule}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.location.as_dict(),
            "object": self.object,
            "path": self.path,
            "message": self.message,
            "rule": self.rule,
        }


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """One JSON Schema from the shipped `schemas/` folder."""
    with (contract.schemas_dir() / name).open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


@functools.cache
def _kind_schemas() -> dict[tuple[str, str], str]:
    """(apiVersion, kind) -> schema file, for every object schema we ship."""
    found: dict[tuple[str, str], str] = {}
    for path in sorted(contract.schemas_dir().glob("*.schema.json")):
        if path.name in (INTENT_SCHEMA, STATE_SCHEMA):
            continue
        props = load_schema(path.name).get("properties", {})
        kind = props.get("kind", {}).get("const")
        api_version = props.get("apiVersion", {}).get("const")
        if kind and api_version:
            found[(api_version, kind)] = path.name
    return found


def schema_errors(
    document: Any, *, schema: str, location: bundle.Location, rule: str = "schema", obj: str = ""
) -> list[Finding]:
    """Every way `document` breaks the named schema, sorted by JSON path."""
    found = [
        Finding(location=location, path=_json_path(error), message=error.message, rule=rule,
                object=obj)
        for error in _validator(schema).iter_errors(document)
    ]
    return sorted(found, key=lambda f: f.path)


def _json_path(error: jsonschema.ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def check_intent(document: Any, *, location: bundle.Location, site: str) -> list[Finding]:
    """The intent file against its schema, and naming the site it lives in."""
    findings = schema_errors(document, schema=INTENT_SCHEMA, location=location)
    if findings:
        return findings
    name = document["metadata"]["name"]
    if name != site:
        findings.append(Finding(
            location=location, path="$.metadata.name", rule="intent-site",
            message=f"names site {name!r} but lives in the folder of site {site!r}",
        ))
    return findings


def check_manifests(manifests: Iterable[bundle.Manifest]) -> list[Finding]:
    """Required object fields, the annotation forms, and the schemas of the kinds we know."""
    findings: list[Finding] = []
    for manifest in manifests:
        findings.extend(_check_manifest(manifest))
    return findings


def _check_manifest(manifest: bundle.Manifest) -> list[Finding]:
    body = manifest.body
    location = manifest.location
    obj = manifest.describe()
    findings: list[Finding] = []

    def need(path: str, message: str, rule: str = "required-field") -> None:
        findings.append(Finding(location=location, path=path, message=message, rule=rule,
                                object=obj))

    for key in ("apiVersion", "kind"):
        if not isinstance(body.get(key), str) or not body.get(key):
            need(f"$.{key}", f"{key} is required and must be a string")
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping):
        need("$.metadata", "metadata is required and must be a mapping")
        return findings
    if not isinstance(metadata.get("name"), str) or not metadata.get("name"):
        need("$.metadata.name", "metadata.name is required and must be a string")
    for key in ("labels", "annotations"):
        values = metadata.get(key)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            need(f"$.metadata.{key}", f"{key} must be a mapping of strings", rule="metadata")
            continue
        for name, value in values.items():
            if not isinstance(value, str):
                need(f"$.metadata.{key}['{name}']",
                     f"value must be a string, not {type(value).__name__} (quote it)",
                     rule="metadata")
    wave = manifest.annotations.get(contract.ANNOTATION_WAVE)
    if isinstance(wave, str) and not _WAVE.fullmatch(wave):
        need(f"$.metadata.annotations['{contract.ANNOTATION_WAVE}']",
             f"wave must be an integer, not {wave!r}", rule="wave")
    intent_id = manifest.intent_id
    if intent_id is not None and not contract.INTENT_ID_PATTERN.match(intent_id):
        need(f"$.metadata.annotations['{contract.ANNOTATION_INTENT_ID}']",
             f"intent id {intent_id!r} must match {contract.INTENT_ID_PATTERN.pattern}",
             rule="intent-id")
    if findings:
        return findings
    schema = _kind_schemas().get((manifest.api_version, manifest.kind))
    if schema:
        findings.extend(schema_errors(dict(body), schema=schema, location=location, obj=obj))
    return findings
