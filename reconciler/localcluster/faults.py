"""Fault injection for the local cluster: latency, error answers, dropped connections, and
unavailable API group versions.

Tests add faults through `LocalCluster.faults`; the HTTP handler asks `FaultSet.match()` before
it handles each request, and the API asks `FaultSet.unavailable()` which group versions to
list in discovery but answer 503 for.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import threading


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to do to matching requests.

    verb: the Kubernetes verb (get, list, watch, create, update, patch, delete,
    deletecollection), "apply" for server-side apply patches only, or None for any.
    path_regex: searched in the request path (no query string). kind: the object kind.
    times: how many requests it hits (None: every one). latency: seconds to wait first.
    status: answer this HTTP code with a Status body instead of handling the request.
    drop_connection: close the socket without any answer.
    """

    verb: str | None = None
    path_regex: str | None = None
    kind: str | None = None
    times: int | None = 1
    latency: float = 0.0
    status: int | None = None
    drop_connection: bool = False

    def matches(self, *, verb: str, patch_type: str | None, path: str, kind: str | None) -> bool:
        """Whether a request is one this fault targets."""
        if self.verb is not None:
            if self.verb == "apply":
                if not (verb == "patch" and patch_type == "apply"):
                    return False
            elif self.verb != verb:
                return False
        if self.path_regex is not None and not re.search(self.path_regex, path):
            return False
        return self.kind is None or self.kind == kind


class FaultHandle:
    """A fault in the set: how often it hit, and a way to take it out."""

    def __init__(self, *, fault: Fault, owner: FaultSet, ident: int) -> None:
        self.fault = fault
        self.ident = ident
        self._owner = owner
        self.hits = 0

    @property
    def exhausted(self) -> bool:
        """Whether it has hit as many requests as it was allowed."""
        return self.fault.times is not None and self.hits >= self.fault.times

    def remove(self) -> None:
        """Stop injecting this fault."""
        self._owner.remove(self)


class FaultSet:
    """The faults in force, matched in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[FaultHandle] = []
        self._ids = itertools.count(1)
        self._unavailable: dict[str, str] = {}  # group version -> the text its 503 carries

    def add(self, fault: Fault) -> FaultHandle:
        """Inject a fault; returns its handle."""
        with self._lock:
            handle = FaultHandle(fault=fault, owner=self, ident=next(self._ids))
            self._faults.append(handle)
            return handle

    def remove(self, handle: FaultHandle) -> None:
        """Take one fault out."""
        with self._lock:
            self._faults = [h for h in self._faults if h is not handle]

    def clear(self) -> None:
        """Take every fault out, unavailable group versions included."""
        with self._lock:
            self._faults = []
            self._unavailable = {}

    def make_unavailable(self, group_version: str, *,
                         message: str = "service unavailable") -> None:
        """List `group_version` (`metrics.k8s.io/v1beta1`) in `/apis` and `/apis/<group>`, and
        answer its discovery document and every path under it with 503 and `message` as
        plain text: what kube-apiserver's aggregator does for an APIService whose backend
        is down (kube-apiserver v1.37.2 answers `service unavailable`)."""
        with self._lock:
            self._unavailable[group_version] = message

    def make_available(self, group_version: str) -> None:
        """Serve `group_version` as the registry says again."""
        with self._lock:
            self._unavailable.pop(group_version, None)

    def unavailable(self) -> dict[str, str]:
        """The group versions made unavailable, each with the text of its 503."""
        with self._lock:
            return dict(self._unavailable)

    def match(
        self, *, verb: str, patch_type: str | None, path: str, kind: str | None
    ) -> Fault | None:
        """The first live fault for a request, counted as a hit; None when none applies."""
        with self._lock:
            for handle in self._faults:
                if handle.exhausted:
                    continue
                if handle.fault.matches(verb=verb, patch_type=patch_type, path=path, kind=kind):
                    handle.hits += 1
                    return handle.fault
        return None

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for h in self._faults if not h.exhausted)
