"""The documents of a fleet repository: where each came from, and what it says. A leaf.

Both sides import these types: `bundle` makes them from a revision, the fence splits them,
`rollout` applies them, and the manager's `validate` and `plan` report on them. This module
imports nothing else of the reconciler but the contract, so nothing needs an import cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from reconciler import contract


@dataclasses.dataclass(frozen=True)
class Location:
    """Where a document came from: file, 0-based document index, 1-based line."""

    file: str
    document: int
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} (document {self.document + 1})"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "document": self.document, "line": self.line}


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
        """`Kind/namespace/name`, or `Kind/name` for an object without a namespace."""
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"


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


@dataclasses.dataclass(frozen=True)
class Bundle:
    """Everything one site's reconcile reads from one revision."""

    site: str
    intent: Intent
    manifests: tuple[Manifest, ...]
    crds: tuple[Manifest, ...]
