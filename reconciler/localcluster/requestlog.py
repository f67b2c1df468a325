"""The record of every request the local cluster served, in memory and as JSON lines.

The HTTP handler appends a `RequestRecord` per request; tests read `LocalCluster.requests`,
and `--request-log` readers get one JSON object per line.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import IO, Any


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One served request. status is the HTTP code, 0 for a dropped connection."""

    time: float  # epoch seconds when the request arrived
    handled: float  # epoch seconds when its answer was decided (a write took effect by then)
    verb: str  # Kubernetes verb: get, list, watch, create, update, patch, delete, ...
    patch_type: str | None  # apply, merge, strategic, json for patches
    path: str  # without the query string
    kind: str | None
    namespace: str | None
    name: str | None
    intent_id: str | None  # the body's reconciler.dev/intent-id annotation
    dry_run: bool
    status: int

    def to_json(self) -> dict[str, Any]:
        """The JSON line's keys."""
        return {
            "time": self.time,
            "handled": self.handled,
            "verb": self.verb,
            "patchType": self.patch_type,
            "path": self.path,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "intentId": self.intent_id,
            "dryRun": self.dry_run,
            "status": self.status,
        }


class RequestLog:
    """A thread-safe, append-only list of records, mirrored to a file when given one."""

    def __init__(self, *, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._path = path
        self._file: IO[str] | None = None

    def open(self) -> None:
        """Open the file for appending (creating its folder)."""
        if self._path is not None and self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("a", encoding="utf-8")

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def append(self, record: RequestRecord) -> None:
        """Record one request; the file line is flushed at once."""
        with self._lock:
            self._records.append(record)
            if self._file is not None:
                self._file.write(json.dumps(record.to_json(), sort_keys=False) + "\n")
                self._file.flush()

    def snapshot(self) -> list[RequestRecord]:
        """A copy of the records so far."""
        with self._lock:
            return list(self._records)
