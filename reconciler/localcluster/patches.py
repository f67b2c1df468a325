"""JSON merge patch, JSON patch and (approximate) strategic merge patch. Called by the store."""

from __future__ import annotations

import copy
from typing import Any

from reconciler.localcluster import fieldpaths, statuses


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge_patch(target: Any, patch: Any, shape: fieldpaths.Shape) -> Any:
    """A merge patch that merges keyed lists of built-in kinds by key and honours `$patch`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if patch.get("$patch") == "delete":
        return None
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
            continue
        child = shape.child(key)
        current = out.get(key)
        if isinstance(value, list) and isinstance(current, list):
            out[key] = _merge_list(current, value, child)
        else:
            out[key] = strategic_merge_patch(current, value, child)
    return out


def _merge_list(current: list[Any], patch: list[Any], shape: fieldpaths.Shape) -> list[Any]:
    kind, keys = shape.list_kind(patch or current)
    if kind != "map":
        return copy.deepcopy([p for p in patch if not (isinstance(p, dict) and "$patch" in p)])
    out = list(current)
    index = {fieldpaths.item_key(item, keys): i for i, item in enumerate(out)
             if isinstance(item, dict)}
    deleted: set[str] = set()
    for item in patch:
        if not isinstance(item, dict):
            continue
        k = fieldpaths.item_key(item, keys)
        if item.get("$patch") == "delete":
            deleted.add(k)
        elif k in index:
            out[index[k]] = strategic_merge_patch(out[index[k]], item, shape.item())
        else:
            index[k] = len(out)
            out.append(copy.deepcopy(item))
    return [i for i in out if not (isinstance(i, dict) and fieldpaths.item_key(i, keys) in deleted)]


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise statuses.bad_request(f'invalid JSON pointer "{path}"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, parts: list[str], op: str, path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise _patch_failed(f"{op} operation does not apply: doc is missing path: \"{path}\"")
    return doc


def _patch_failed(message: str) -> statuses.ApiError:
    return statuses.ApiError(code=422, reason="Invalid", message=message)


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 add, remove, replace, move, copy and test."""
    if not isinstance(operations, list):
        raise statuses.bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation:
            raise statuses.bad_request("unable to parse json patch: missing op")
        op = operation["op"]
        path = operation.get("path", "")
        parts = _pointer(path)
        if op == "test":
            if _resolve(doc, parts, op, path) != operation.get("value"):
                raise _patch_failed(f"testing value {path} failed: test failed")
            continue
        if op in ("move", "copy"):
            source_path = operation.get("from", "")
            value = copy.deepcopy(_resolve(doc, _pointer(source_path), op, source_path))
            if op == "move":
                doc = _remove(doc, _pointer(source_path), op, source_path)
            doc = _add(doc, parts, value, op, path)
        elif op == "add":
            doc = _add(doc, parts, copy.deepcopy(operation.get("value")), op, path)
        elif op == "remove":
            doc = _remove(doc, parts, op, path)
        elif op == "replace":
            _resolve(doc, parts, op, path)
            doc = _remove(doc, parts, op, path)
            doc = _add(doc, parts, copy.deepcopy(operation.get("value")), op, path)
        else:
            raise statuses.bad_request(f"Unexpected kind: {op}")
    return doc


def _add(doc: Any, parts: list[str], value: Any, op: str, path: str) -> Any:
    if not parts:
        return value
    parent = _resolve(doc, parts[:-1], op, path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _patch_failed(f"{op} operation does not apply: doc is missing path: \"{path}\"")
    else:
        raise _patch_failed(f"{op} operation does not apply: doc is missing path: \"{path}\"")
    return doc


def _remove(doc: Any, parts: list[str], op: str, path: str) -> Any:
    if not parts:
        return None
    parent = _resolve(doc, parts[:-1], op, path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise _patch_failed(f"{op} operation does not apply: doc is missing path: \"{path}\"")
    return doc
