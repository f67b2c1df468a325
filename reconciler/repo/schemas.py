"""JSON Schema checks of the intent and of manifests. Called by bundle, the pipeline and validate.

Every finding names the file, the document, the object and the JSON path of the
offending field, so a user can go straight to the line to fix.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema

from reconciler import contract, durations
from reconciler.repo import documents, names

INTENT_SCHEMA = "intent.schema.json"
_WAVE = re.compile(r"-?[0-9]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
STATE_SCHEMA = "state.schema.json"


class Severity(enum.StrEnum):
    ERROR = "error"  # the revision cannot be applied as it is
    WARNING = "warning"  # worth a look; does not fail `validate` (unless --strict says so)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One broken rule in one document."""

    location: documents.Location
    path: str  # JSON path of the offending field, `$` for the document
    message: str
    rule: str  # e.g. schema, required-field, intent-site
    object: str = ""  # Kind/namespace/name when known
    severity: Severity = Severity.ERROR
    keys: tuple[str | int, ...] = ()  # the JSON path as keys, to find its line
    line: int | None = None  # 1-based line and column of the offending field, when found
    column: int | None = None

    def short(self) -> str:
        return f"{self.path}: {self.message}"

    def where(self) -> str:
        """`file:line:column` of the field when known, else of the document."""
        if self.line is not None:
            return documents.position(self.location.file, self.line, self.column)
        return self.location.position

    def one_line(self) -> str:
        """`file:line:column: severity: object: path: message [rule]` on one line, as
        `reconciler validate` prints it: line breaks in names or messages show as `\\n`."""
        parts = [self.where(), self.severity.value]
        if self.object:
            parts.append(self.object)
        if self.path != "$":
            parts.append(self.path)
        text = ": ".join(parts) + f": {self.message} [{self.rule}]"
        return text.replace("\r", "\\r").replace("\n", "\\n")

    def __str__(self) -> str:
        what = f" {self.object}" if self.object else ""
        return f"{self.location}{what}: {self.path}: {self.message} [{self.rule}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "file": self.location.file,
            "line": self.line if self.line is not None else self.location.line,
            "column": self.column,
            "document": self.location.document,
            "object": self.object,
            "path": self.path,
            "message": self.message,
            "rule": self.rule,
        }


def json_path(keys: Iterable[str | int]) -> str:
    """`$.spec.items[0]`, or `$.metadata.annotations['a/b']` for keys that are not names."""
    path = "$"
    for key in keys:
        if isinstance(key, int):
            path += f"[{key}]"
        elif _NAME.fullmatch(key):
            path += f".{key}"
        else:
            path += f"[{key!r}]"
    return path


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
    return cls(schema, format_checker=_format_checker(cls.FORMAT_CHECKER))


def _format_checker(base: jsonschema.FormatChecker) -> jsonschema.FormatChecker:
    """The draft's formats, plus `duration`: the one duration parser, durations.parse()."""
    checker = jsonschema.FormatChecker(formats=())
    checker.checkers = dict(base.checkers)
    checker.checks("duration", raises=ValueError)(_is_duration)
    return checker


def _is_duration(instance: object) -> bool:
    """The `duration` format: durations.parse() accepts it (its ValueError says why not)."""
    if isinstance(instance, str | int | float):
        durations.parse(instance)
    return True  # another type is the `type` keyword's to report


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
    document: Any, *, schema: str, location: documents.Location, rule: str = "schema", obj: str = ""
) -> list[Finding]:
    """Every way `document` breaks the named schema, sorted by JSON path."""
    return findings_of(_validator(schema), document, location=location, rule=rule, obj=obj)


def findings_of(validator: jsonschema.protocols.Validator, document: Any, *,
                location: documents.Location, rule: str, obj: str = "",
                prefix: str = "", redact: bool = False) -> list[Finding]:
    """Every error `validator` finds in `document`, as findings sorted by JSON path.

    An object with fields its schema does not allow gets one finding per such field, at
    that field, so the reported line is the line to fix. With `redact` (a Secret), no
    message quotes a value: findings end up in CI logs and pull-request annotations.
    """
    found: list[Finding] = []
    for error in validator.iter_errors(document):
        keys = tuple(error.absolute_path)
        extra = _undeclared(error)
        if extra:
            found.extend(Finding(location=location, path=json_path((*keys, name)), rule=rule,
                                 message=f"{prefix}field {name!r} is not declared in the schema",
                                 object=obj, keys=(*keys, name)) for name in extra)
            continue
        message = error.message
        if error.validator == "format" and error.cause is not None:
            message = str(error.cause)  # the parser's own words: what is wrong, what to write
        if redact:
            message = (f"breaks the schema's {error.validator!r} rule "
                       f"({_short(error.validator_value)}); the value is not shown")
        found.append(Finding(location=location, path=json_path(keys), rule=rule, object=obj,
                             message=prefix + message, keys=keys))
    return sorted(found, key=lambda f: f.path)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def is_secret(body: Mapping[str, Any]) -> bool:
    """A core Secret: its values are never quoted in a message."""
    return body.get("apiVersion") == "v1" and body.get("kind") == "Secret"


def _undeclared(error: jsonschema.ValidationError) -> list[str]:
    """The fields an `additionalProperties: false` error is about, in document order."""
    if error.validator != "additionalProperties" or error.validator_value is not False:
        return []
    if not isinstance(error.instance, Mapping) or not isinstance(error.schema, Mapping):
        return []
    declared = error.schema.get("properties", {})
    patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
    return [str(name) for name in error.instance
            if name not in declared and not any(p.search(str(name)) for p in patterns)]


def check_intent(document: Any, *, location: documents.Location, site: str) -> list[Finding]:
    """The intent file against its schema, and naming the site it lives in."""
    findings = schema_errors(document, schema=INTENT_SCHEMA, location=location)
    if findings:
        return findings
    name = document["metadata"]["name"]
    if name != site:
        findings.append(Finding(
            location=location, path="$.metadata.name", rule="intent-site",
            keys=("metadata", "name"),
            message=f"names site {name!r} but lives in the folder of site {site!r}",
        ))
    return findings


def check_manifests(manifests: Iterable[documents.Manifest]) -> list[Finding]:
    """Required object fields, the annotation forms, and the schemas of the kinds we know."""
    findings: list[Finding] = []
    for manifest in manifests:
        findings.extend(check_manifest(manifest))
    return findings


def check_bundle(site_bundle: documents.Bundle) -> list[Finding]:
    """What sync and plan check of a revision before the fence: every manifest and CRD
    (check_manifests()), and that no document of `crds/` carries an intent id."""
    findings = check_manifests([*site_bundle.crds, *site_bundle.manifests])
    for crd in site_bundle.crds:
        findings.extend(check_shared(crd, site=site_bundle.site))
    return findings


def check_shared(manifest: documents.Manifest, *, site: str | None) -> list[Finding]:
    """A document of `crds/`, shared by every site and outside the fence: one carrying an
    intent id (rule `crd-intent-id`) would be applied whatever intent is in force, so it is
    refused, with where to move it (`site` names the site; None: any site's folder)."""
    carried = manifest.annotations.get(contract.ANNOTATION_INTENT_ID)
    if carried is None:
        return []
    place = contract.manifests_dir(site) if site else contract.manifests_dir("<site>")
    return [Finding(
        location=manifest.location, path=json_path(
            ("metadata", "annotations", contract.ANNOTATION_INTENT_ID)),
        keys=("metadata", "annotations", contract.ANNOTATION_INTENT_ID), rule="crd-intent-id",
        object=manifest.describe(),
        message=(f"carries intent id {carried!r}, but {contract.CRDS_DIR}/ is shared by every "
                 f"site and outside the fence: move the document under {place}/ to fence it "
                 "by intent, or remove the annotation"),
    )]


def check_manifest(manifest: documents.Manifest) -> list[Finding]:
    """One manifest: object fields, annotation forms, and the schema in `schemas/` for its
    kind."""
    body = manifest.body
    location = manifest.location
    obj = manifest.describe()
    findings: list[Finding] = []

    def need(keys: tuple[str | int, ...], message: str, rule: str = "required-field") -> None:
        findings.append(Finding(location=location, path=json_path(keys), message=message,
                                rule=rule, object=obj, keys=keys))

    for key in ("apiVersion", "kind"):
        if not isinstance(body.get(key), str) or not body.get(key):
            need((key,), f"{key} is required and must be a string")
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping):
        need(("metadata",), "metadata is required and must be a mapping")
        return findings
    if not isinstance(metadata.get("name"), str) or not metadata.get("name"):
        need(("metadata", "name"), "metadata.name is required and must be a string")
    for keys, message, rule in names.problems(body):  # before any path, URL or log
        need(keys, message, rule=rule)
    for key in ("labels", "annotations"):
        values = metadata.get(key)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            need(("metadata", key), f"{key} must be a mapping of strings", rule="metadata")
            continue
        for name, value in values.items():
            if not isinstance(value, str):
                need(("metadata", key, str(name)),
                     f"value must be a string, not {type(value).__name__} (quote it)",
                     rule="metadata")
    wave = manifest.annotations.get(contract.ANNOTATION_WAVE)
    if isinstance(wave, str) and not _WAVE.fullmatch(wave):
        need(("metadata", "annotations", contract.ANNOTATION_WAVE),
             f"wave must be an integer, not {wave!r}", rule="wave")
    intent_id = manifest.intent_id
    if intent_id is not None and not contract.INTENT_ID_PATTERN.match(intent_id):
        need(("metadata", "annotations", contract.ANNOTATION_INTENT_ID),
             f"intent id {intent_id!r} must match {contract.INTENT_ID_PATTERN.pattern}",
             rule="intent-id")
    if findings:
        return findings
    schema = _kind_schemas().get((manifest.api_version, manifest.kind))
    if schema:
        findings.extend(schema_errors(dict(body), schema=schema, location=location, obj=obj))
    return findings


def has_shipped_schema(*, api_version: str, kind: str) -> bool:
    """Whether `schemas/` holds a schema for this kind."""
    return (api_version, kind) in _kind_schemas()
