"""Validation and pruning of custom resources against a CRD version's openAPIV3Schema.

Called by the store on every write of a custom resource. Covers the common structural-schema
rules (type, required, enum, bounds, pattern, nullable, int-or-string, preserve-unknown-fields)
and words errors as the real apiextensions-apiserver does.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from reconciler.localcluster import statuses

# Fields of every object the schema does not govern.
_ROOT_SKIP = ("apiVersion", "kind", "metadata")


@dataclasses.dataclass(frozen=True)
class Result:
    """A pruned object, what was pruned, and the validation errors."""

    obj: dict[str, Any]
    pruned: tuple[str, ...]
    causes: tuple[statuses.Cause, ...]


def type_name(value: Any) -> str:
    """The JSON schema type name of a value, as the apiserver's messages print it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _quote(value: Any) -> str:
    """Go's %#v-ish rendering of a bad value: strings quoted, others as JSON."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _type_ok(expected: str, value: Any, schema: Mapping[str, Any]) -> bool:
    if value is None:
        return bool(schema.get("nullable"))
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    actual = type_name(value)
    if expected == "number":
        return actual in ("integer", "number")
    return actual == expected


def validate(obj: Mapping[str, Any], schema: Mapping[str, Any] | None) -> Result:
    """Prune unknown fields and collect errors for a whole custom resource."""
    if not schema:
        return Result(obj=dict(obj), pruned=(), causes=())
    causes: list[statuses.Cause] = []
    pruned: list[str] = []
    out: dict[str, Any] = {}
    properties = schema.get("properties") or {}
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    for key, value in obj.items():
        if key in _ROOT_SKIP:
            out[key] = value
            continue
        if key in properties:
            out[key] = _walk(value, properties[key], key, causes, pruned)
        elif preserve:
            out[key] = value
        else:
            pruned.append(key)
    for req in schema.get("required") or ():
        if req not in obj and req not in _ROOT_SKIP:
            causes.append(statuses.Cause(type="FieldValueRequired", message="Required value",
                                         field=req))
    return Result(obj=out, pruned=tuple(pruned), causes=tuple(causes))


def _walk(
    value: Any,
    schema: Mapping[str, Any],
    path: str,
    causes: list[statuses.Cause],
    pruned: list[str],
) -> Any:
    expected = schema.get("type")
    if expected and not _type_ok(expected, value, schema):
        got = type_name(value)
        causes.append(
            statuses.Cause(
                type="FieldValueTypeInvalid",
                message=(
                    f'Invalid value: "{got}": {path} in body must be of type {expected}: "{got}"'
                ),
                field=path,
            )
        )
        return value
    if value is None:
        return value
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        supported = ", ".join(_quote(v) for v in enum)
        causes.append(
            statuses.Cause(
                type="FieldValueNotSupported",
                message=f"Unsupported value: {_quote(value)}: supported values: {supported}",
                field=path,
            )
        )
    if isinstance(value, dict):
        return _walk_object(value, schema, path, causes, pruned)
    if isinstance(value, list):
        items = schema.get("items")
        _check_bounds(value, schema, path, causes)
        if isinstance(items, Mapping):
            return [
                _walk(item, items, f"{path}[{i}]", causes, pruned) for i, item in enumerate(value)
            ]
        return value
    _check_bounds(value, schema, path, causes)
    return value


def _walk_object(
    value: dict[str, Any],
    schema: Mapping[str, Any],
    path: str,
    causes: list[statuses.Cause],
    pruned: list[str],
) -> dict[str, Any]:
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    out: dict[str, Any] = {}
    for key, item in value.items():
        child = f"{path}.{key}"
        if properties and key in properties:
            out[key] = _walk(item, properties[key], child, causes, pruned)
        elif isinstance(additional, Mapping):
            out[key] = _walk(item, additional, child, causes, pruned)
        elif additional is True or preserve or (not properties and additional is None and
                                                 _is_free_form(schema)):
            out[key] = item
        else:
            pruned.append(child)
    for req in schema.get("required") or ():
        if req not in value:
            causes.append(statuses.Cause(type="FieldValueRequired", message="Required value",
                                         field=f"{path}.{req}"))
    _check_bounds(value, schema, path, causes)
    return out


def _is_free_form(schema: Mapping[str, Any]) -> bool:
    """An object schema with no properties at all keeps nothing unless told to preserve."""
    return bool(schema.get("x-kubernetes-embedded-resource"))


def _check_bounds(
    value: Any, schema: Mapping[str, Any], path: str, causes: list[statuses.Cause]
) -> None:
    def bad(detail: str, cause_type: str = "FieldValueInvalid") -> None:
        causes.append(
            statuses.Cause(
                type=cause_type, message=f"Invalid value: {_quote(value)}: {detail}", field=path
            )
        )

    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            bad(f"{path} in body should be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            bad(f"{path} in body should be less than or equal to {schema['maximum']}")
    elif isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            bad(f"{path} in body should be at least {schema['minLength']} chars long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            causes.append(
                statuses.Cause(
                    type="FieldValueTooLong",
                    message=f"Too long: may not be more than {schema['maxLength']} bytes",
                    field=path,
                )
            )
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            bad(f"{path} in body should match '{pattern}'")
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            bad(f"{path} in body should have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append(
                statuses.Cause(
                    type="FieldValueTooMany",
                    message=f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                    field=path,
                )
            )


def apply_defaults(obj: dict[str, Any], schema: Mapping[str, Any] | None) -> None:
    """Set the schema's `default:` values in place, as the apiextensions-apiserver does on
    decoding: a property absent from an object that is present gets its default; an
    absent object gets none of its properties' defaults."""
    if schema:
        _defaults(obj, schema, root=True)


def _defaults(value: Any, schema: Mapping[str, Any], *, root: bool = False) -> None:
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        for key, child in properties.items():
            if root and key in _ROOT_SKIP:
                continue
            if key not in value and isinstance(child, Mapping) and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value and isinstance(child, Mapping):
                _defaults(value[key], child)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for key, item in value.items():
                if key not in properties:
                    _defaults(item, additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _defaults(item, schema["items"])


def child_schema(schema: Mapping[str, Any] | None, key: str) -> Mapping[str, Any] | None:
    """The schema of a map field, or None when the field is free-form."""
    if not schema:
        return None
    properties: Mapping[str, Mapping[str, Any]] = schema.get("properties") or {}
    if key in properties:
        return properties[key]
    additional = schema.get("additionalProperties")
    return additional if isinstance(additional, Mapping) else None


def items_schema(schema: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The schema of a list's items."""
    if not schema:
        return None
    items = schema.get("items")
    return items if isinstance(items, Mapping) else None


def typed_patch_error(config: Mapping[str, Any], schema: Mapping[str, Any] | None) -> str | None:
    """Why server-side apply cannot build a typed patch from `config`, or None.

    A real apiserver converts an applied configuration to a typed value of the CRD's
    schema before it validates or prunes anything: a field the schema does not declare,
    or a value of the wrong type, fails there with a 500, not a 422 and not a silent
    prune. The path is printed as structured-merge-diff prints it (`.spec.bogus`).
    """
    if not schema:
        return None
    return _typed_object(config, schema, "", root=True)


def _typed_object(value: Mapping[str, Any], schema: Mapping[str, Any], path: str, *,
                  root: bool = False) -> str | None:
    properties = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    for key, item in value.items():
        if root and key in _ROOT_SKIP:
            continue
        child = f"{path}.{key}"
        if key in properties:
            problem = _typed(item, properties[key], child)
        elif isinstance(additional, Mapping):
            problem = _typed(item, additional, child)
        elif additional is True or preserve or _is_free_form(schema):
            problem = None
        else:
            problem = f"{child}: field not declared in schema"
        if problem:
            return problem
    return None


def _typed(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    expected = schema.get("type")
    if value is None or (schema.get("x-kubernetes-preserve-unknown-fields") and not expected):
        return None
    if expected and not _type_ok(expected, value, schema):
        wanted = {"integer": "numeric (int or float)", "number": "numeric (int or float)",
                  "object": "map", "array": "list", "boolean": "bool"}.get(expected, expected)
        got = "string" if isinstance(value, str) else (
            f"&value.valueUnstructured{{Value:{_quote(value)}}}")
        return f"{path}: expected {wanted}, got {got}"
    if isinstance(value, dict):
        return _typed_object(value, schema, path)
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            problem = _typed(item, schema["items"], f"{path}[{index}]")
            if problem:
                return problem
    return None
