"""The names a manifest may carry, as Kubernetes validates them. Called by schemas.check_manifest().

One table of rules, checked for the whole revision before anything is applied, so that a
name from the repository is known safe before it reaches a file path, a URL or a log:

* object names: a DNS-1123 subdomain for most kinds (`NAME_RULES`), a DNS-1123 label for
  the kinds whose name becomes a host name (Namespace, Service), a path segment for the
  RBAC kinds (`system:controller:foo` is a real ClusterRole);
* `metadata.namespace`: a DNS-1123 label;
* `apiVersion` (it becomes a URL path) and `kind`;
* label and annotation keys (qualified names), label values, and the total size of the
  annotations (256 KiB, as the API server counts them).

Each check returns the problem, or None; `problems()` gives every problem of a manifest
with its JSON path and the rule it breaks. A name is quoted with repr() in a message, so
no control character in it reaches a log or a terminal (documents.printable()).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DNS1123_LABEL = "dns-1123-label"
DNS1123_SUBDOMAIN = "dns-1123-subdomain"
PATH_SEGMENT = "path-segment"

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_KIND = re.compile(r"[A-Z][A-Za-z0-9]*")
_VERSION = _LABEL

LABEL_MAX = 63
SUBDOMAIN_MAX = 253
ANNOTATIONS_MAX_BYTES = 256 * 1024  # TotalAnnotationSizeLimitB of the API server

# The kinds whose name is not a DNS-1123 subdomain, by (API group, kind). Every other kind,
# custom resources included, needs a subdomain (apiextensions validates CR names so).
NAME_RULES: Mapping[tuple[str, str], str] = {
    ("", "Namespace"): DNS1123_LABEL,
    ("", "Service"): DNS1123_LABEL,
    ("rbac.authorization.k8s.io", "Role"): PATH_SEGMENT,
    ("rbac.authorization.k8s.io", "ClusterRole"): PATH_SEGMENT,
    ("rbac.authorization.k8s.io", "RoleBinding"): PATH_SEGMENT,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): PATH_SEGMENT,
}

def name_rule(*, api_version: str, kind: str) -> str:
    """The rule an object name of this kind follows (NAME_RULES, else a subdomain)."""
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return NAME_RULES.get((group, kind), DNS1123_SUBDOMAIN)


def label_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 label, or None."""
    if len(value) > LABEL_MAX:
        return f"is longer than {LABEL_MAX} characters"
    if not _LABEL.fullmatch(value):
        return ("must be a DNS-1123 label: lower-case letters, digits and '-', starting and "
                "ending with a letter or digit")
    return None


def subdomain_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 subdomain, or None."""
    if len(value) > SUBDOMAIN_MAX:
        return f"is longer than {SUBDOMAIN_MAX} characters"
    if not _SUBDOMAIN.fullmatch(value):
        return ("must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
                "each part starting and ending with a letter or digit")
    return None


def path_segment_problem(value: str) -> str | None:
    """Why `value` cannot be one segment of an API path, or None."""
    if value in (".", ".."):
        return f"may not be {value!r}"
    if "/" in value or "%" in value:
        return "may not contain '/' or '%'"
    if not value.isprintable():
        return "may not contain control characters"
    return None


def name_problem(*, api_version: str, kind: str, name: str) -> str | None:
    """Why `name` is not a valid name for an object of this kind, or None."""
    rule = name_rule(api_version=api_version, kind=kind)
    if rule == DNS1123_LABEL:
        return label_problem(name)
    if rule == PATH_SEGMENT:
        return path_segment_problem(name)
    return subdomain_problem(name)


def api_version_problem(value: str) -> str | None:
    """Why `value` is not `version` or `group/version`, or None: it becomes a URL path."""
    group, _, version = value.rpartition("/")
    if (group and subdomain_problem(group)) or not _VERSION.fullmatch(version) \
            or len(version) > LABEL_MAX:
        return ("must be `version` or `group/version`: a DNS-1123 subdomain and a DNS-1123 "
                "label")
    return None


def kind_problem(value: str) -> str | None:
    """Why `value` is not a kind's name (CamelCase letters and digits), or None."""
    if not _KIND.fullmatch(value) or len(value) > LABEL_MAX:
        return "must be a kind's name: a capital letter, then letters and digits"
    return None


def key_problem(key: Any) -> str | None:
    """Why `key` is not a label or annotation key (`[prefix/]name`), or None."""
    if not isinstance(key, str):
        return f"key must be a string, not {type(key).__name__}"
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or subdomain_problem(prefix)):
        return "key's prefix must be a DNS-1123 subdomain"
    if not name or len(name) > LABEL_MAX or not _QUALIFIED_NAME.fullmatch(name):
        return (f"key must be a qualified name: at most {LABEL_MAX} letters, digits, '-', "
                "'_' and '.', starting and ending with a letter or digit, after an optional "
                "DNS-1123 subdomain prefix and '/'")
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a label value (empty, or a short qualified name), or None."""
    if value and (len(value) > LABEL_MAX or not _QUALIFIED_NAME.fullmatch(value)):
        return (f"label value must be empty or at most {LABEL_MAX} letters, digits, '-', "
                "'_' and '.', starting and ending with a letter or digit")
    return None


def annotations_problem(annotations: Mapping[Any, Any]) -> str | None:
    """Why the annotations are too large together (ANNOTATIONS_MAX_BYTES), or None."""
    size = sum(len(str(key).encode()) + len(str(value).encode())
               for key, value in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        return (f"annotations hold {size} bytes, over the API server's limit of "
                f"{ANNOTATIONS_MAX_BYTES}")
    return None


Problem = tuple[tuple[str | int, ...], str, str]  # JSON path as keys, message, rule


def problems(body: Mapping[str, Any]) -> list[Problem]:
    """Every name, key and size rule `body` breaks; fields of the wrong type are left to
    the type checks of schemas.check_manifest()."""
    found: list[Problem] = []
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if isinstance(api_version, str) and api_version and (
            problem := api_version_problem(api_version)):
        found.append((("apiVersion",), f"apiVersion {api_version!r} {problem}",
                      "api-version"))
    if isinstance(kind, str) and kind and (problem := kind_problem(kind)):
        found.append((("kind",), f"kind {kind!r} {problem}", "kind"))
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping):
        return found
    name = metadata.get("name")
    if isinstance(name, str) and name and isinstance(api_version, str) \
            and isinstance(kind, str):
        rule = name_rule(api_version=api_version, kind=kind)
        if problem := name_problem(api_version=api_version, kind=kind, name=name):
            found.append((("metadata", "name"), f"name {name!r} {problem}", rule))
    namespace = metadata.get("namespace")
    if namespace is not None:
        if not isinstance(namespace, str):
            found.append((("metadata", "namespace"), "namespace must be a string, not "
                          f"{type(namespace).__name__}", "namespace"))
        elif problem := label_problem(namespace):
            found.append((("metadata", "namespace"),
                          f"namespace {namespace!r} {problem}", "namespace"))
    for field in ("labels", "annotations"):
        values = metadata.get(field)
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            shown = str(key)
            if problem := key_problem(key):
                found.append((("metadata", field, shown), f"{field[:-1]} {problem}",
                              "qualified-name"))
            elif field == "labels" and isinstance(value, str) \
                    and (problem := label_value_problem(value)):
                found.append((("metadata", field, shown), problem, "label-value"))
        if field == "annotations" and (problem := annotations_problem(values)):
            found.append((("metadata", field), problem, "annotations-size"))
    return found
