"""The documents of a fleet repository: where each came from, and what it says. A leaf.

Both sides import these types: `bundle` makes them from a revision, the fence splits them,
`rollout` applies them, and the manager's `validate` and `plan` report on them. This module
imports nothing else of the reconciler but the contract and errors, so nothing needs an
import cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from reconciler import contract, errors


def printable(text: str) -> str:
    """`text` with its control characters escaped (errors.printable()): how a name, a path
    or any other repository text is shown in a message, a log line or on a terminal."""
    return errors.printable(text)


def position(file: str, line: int | None = None, column: int | None = None) -> str:
    """`file`, `file:line` or `file:line:column`: how every message and report names a
    place in a file, as compilers and editors read it (control characters escaped)."""
    file = printable(file)
    if not line:
        return file
    return f"{file}:{line}:{column}" if column else f"{file}:{line}"


@dataclasses.dataclass(frozen=True)
class Location:
    """Where a document came from: file, 0-based document index, 1-based line; and for an
    object of a `kind: List`, its index in `items` (one index per List it is nested in)."""

    file: str
    document: int
    line: int | None = None  # of the document: a List's items share their List's line
    items: tuple[int, ...] = ()

    @property
    def position(self) -> str:
        """`file:line` of the document's start (`file` when the line is unknown)."""
        return position(self.file, self.line)

    @property
    def item_path(self) -> str:
        """`items[2]` (`items[0].items[1]` when nested) for a List's object; else ''."""
        return ".".join(f"items[{index}]" for index in self.items)

    @property
    def item_keys(self) -> tuple[str | int, ...]:
        """The keys from the document's root to this object: ('items', 2) for a List's."""
        return tuple(key for index in self.items for key in ("items", index))

    def item(self, index: int) -> Location:
        """The location of item `index` of the List at this location."""
        return dataclasses.replace(self, items=(*self.items, index))

    def __str__(self) -> str:
        item = f", {self.item_path}" if self.items else ""
        return f"{self.position} (document {self.document + 1}{item})"

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"file": self.file, "document": self.document,
                                 "line": self.line}
        if self.items:  # only for a List's objects: other records keep their three keys
            found["items"] = list(self.items)
        return found


@dataclasses.dataclass(frozen=True)
class Manifest:
    """One desired object, as committed."""

    location: Location
    body: Mapping[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str | None:
        namespace = self.metadata.get("namespace")
        return str(namespace) if namespace else None

    @property
    def annotations(self) -> Mapping[str, Any]:
        annotations = self.metadata.get("annotations")
        return annotations if isinstance(annotations, Mapping) else {}

    @property
    def intent_id(self) -> str | None:
        value = self.annotations.get(contract.ANNOTATION_INTENT_ID)
        return None if value is None else str(value)

    @property
    def wave(self) -> int:
        """The `reconciler.dev/wave` annotation; 0 when absent (validate checks the form)."""
        try:
            return int(str(self.annotations.get(contract.ANNOTATION_WAVE, "0")))
        except ValueError:
            return 0

    def describe(self) -> str:
        """`Kind/namespace/name`, or `Kind/name` for an object without a namespace; control
        characters escaped (printable()), as a name may not be valid yet."""
        if self.namespace:
            return printable(f"{self.kind}/{self.namespace}/{self.name}")
        return printable(f"{self.kind}/{self.name}")


@dataclasses.dataclass(frozen=True)
class Intent:
    """The site's commit point: which intent the manager wants in force."""

    site: str
    id: str
    sequence: int | None
    description: str
    health_timeout: float
    prune: bool
    location: Location
    # `rollout.prune: allowEmpty`: an empty or shrinking desired set may prune (#12.4).
    allow_empty: bool = False


@dataclasses.dataclass(frozen=True)
class Bundle:
    """Everything one site's reconcile reads from one revision."""

    site: str
    intent: Intent
    manifests: tuple[Manifest, ...]
    crds: tuple[Manifest, ...]
    # "" when sites/<site>/manifests/ is a folder; else "is missing" or "is not a folder".
    manifests_missing: str = ""


CRD_GROUP = "apiextensions.k8s.io"
CRD_KIND = "CustomResourceDefinition"


@dataclasses.dataclass(frozen=True)
class ServedKind:
    """One version of a kind that a CRD manifest serves."""

    group: str
    version: str
    kind: str
    namespaced: bool
    schema: Mapping[str, Any] | None  # the version's openAPIV3Schema, when it has one

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


def is_crd(manifest: Manifest) -> bool:
    """A CustomResourceDefinition, of any version of its API group."""
    return manifest.kind == CRD_KIND and manifest.api_version.rpartition("/")[0] == CRD_GROUP


def served_kinds(manifest: Manifest) -> tuple[ServedKind, ...]:
    """The kinds a CRD manifest serves, one per served version; none for anything else or a
    malformed CRD (its own schema check reports that). Rollout waits for these, plan and
    validate learn kinds and scopes from them."""
    spec = manifest.body.get("spec") if is_crd(manifest) else None
    if not isinstance(spec, Mapping):
        return ()
    group, names, versions = spec.get("group"), spec.get("names"), spec.get("versions")
    kind = names.get("kind") if isinstance(names, Mapping) else None
    if not isinstance(group, str) or not isinstance(kind, str) or not isinstance(versions, list):
        return ()
    namespaced = spec.get("scope", "Namespaced") != "Cluster"
    served = []
    for entry in versions:
        if not isinstance(entry, Mapping) or not entry.get("served", True):
            continue
        schema = entry.get("schema")
        schema = schema.get("openAPIV3Schema") if isinstance(schema, Mapping) else None
        served.append(ServedKind(group=group, version=str(entry.get("name")), kind=kind,
                                 namespaced=namespaced,
                                 schema=schema if isinstance(schema, Mapping) else None))
    return tuple(served)
