"""A site's state in a ConfigMap of the reconciler's namespace. Called by cli and agent.

The in-cluster store (`--state-store kubernetes`): the record of site `<site>` is the
ConfigMap `reconciler-state-<site>` in the state namespace, its key `state.json` holding
exactly what FileStateStore writes to `<site>.json` (`state.encode()`, `state.decode()`).

Every save is an optimistic write: the first creates the object (409 AlreadyExists when
another replica created it first), every later one replaces it over the resourceVersion
this store last read or wrote. A save that meets another writer raises StateConflictError
and overwrites nothing; the pass fails, and the agent reads the record again before its
next one. A record too big for one object (1 MiB, the API server's limit) is refused
before it is sent, naming its size. The site's Lease (site/lease.py) is the lock: only
its holder runs passes; `guard`, when given, refuses any save once the lease is lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from reconciler import cluster, contract, errors
from reconciler.repo import bundle
from reconciler.site import state

KEY = "state.json"
NAME_PREFIX = "reconciler-state-"
LABEL_STATE_OF = contract.ANNOTATION_PREFIX + "state-of"  # never the site label: not pruned
MAX_BYTES = 1024 * 1024  # what a ConfigMap's data may hold, keys included
DEFAULT_NAMESPACE = "reconciler-system"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def default_namespace(path: str = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The pod's own namespace when running in a cluster, else `reconciler-system`."""
    try:
        with open(path, encoding="utf-8") as handle:
            found = handle.read().strip()
    except OSError:
        return DEFAULT_NAMESPACE
    return found or DEFAULT_NAMESPACE


def object_name(site: str) -> str:
    return NAME_PREFIX + site


class KubeStateStore:
    """One site's state as a ConfigMap, written with optimistic concurrency."""

    def __init__(self, *, target: cluster.Cluster, namespace: str, site: str,
                 guard: Callable[[], None] | None = None) -> None:
        bundle.check_site_name(site)
        self.target = target
        self.namespace = namespace
        self.site = site
        self.ref = cluster.ObjectRef("v1", "ConfigMap", namespace, object_name(site))
        self.guard = guard  # raises NotLeaderError once the site's lease is lost
        self._version: str | None = None  # resourceVersion last read or written
        self.conflicted = False  # a save met another writer: read the record again

    @property
    def where(self) -> str:
        return str(self.ref)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Nothing to hold here: the site's Lease is the lock, and every save is checked
        against the resourceVersion read, so a second writer fails instead of overwriting."""
        yield

    def exists(self) -> bool:
        return self._read() is not None

    def _read(self) -> dict[str, Any] | None:
        try:
            return self.target.get(self.ref)
        except errors.ClusterError as exc:
            raise errors.StateError(f"{self.where}: cannot read the state: {exc}") from exc

    def load(self) -> state.SiteState:
        """The recorded state, or an empty one for a site never synced; remembers the
        resourceVersion the next save must still find."""
        live = self._read()
        if live is None:
            self._version = None
            return state.SiteState(site=self.site)
        text = (live.get("data") or {}).get(KEY)
        if not isinstance(text, str):
            raise errors.StateError(
                f"{self.where}: corrupt state: no {KEY!r} key; it was left untouched: "
                f"{state.KEEP_ADVICE}")
        loaded = state.decode(text, where=f"{self.where}[{KEY}]", site=self.site)
        self._version = str(live["metadata"]["resourceVersion"])
        return loaded

    def save(self, current: state.SiteState) -> None:
        """Create or replace the ConfigMap over the resourceVersion last seen.

        StateConflictError when another writer changed it (or created it) since: nothing
        is overwritten. StateError when the record is too big, or the write fails; the
        stored record is then the previous one.
        """
        if self.guard is not None:
            self.guard()
        payload = state.encode(current, where=self.where).decode()
        size = len(KEY) + len(payload.encode())
        if size > MAX_BYTES:
            raise errors.StateError(
                f"{self.where}: the state of site {self.site!r} is {size} bytes, more than "
                f"the {MAX_BYTES} a ConfigMap holds (inventory of "
                f"{len(current.inventory)} objects, {len(current.history)} history "
                "entries); not saved, the previous state is kept: use --state-store file "
                "for a site this big")
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": self.ref.name, "namespace": self.namespace,
                         "labels": {LABEL_STATE_OF: self.site,
                                    contract.LABEL_MANAGED_BY: contract.MANAGED_BY_VALUE}},
            "data": {KEY: payload},
        }
        try:
            if self._version is None:
                stored = self.target.create(body)
            else:
                body["metadata"]["resourceVersion"] = self._version
                stored = self.target.update(body)
        except errors.VersionConflictError as exc:
            self.conflicted = True
            raise errors.StateConflictError(
                f"{self.where}: the state of site {self.site!r} was written by another "
                "reconciler since this one read it; not overwritten (is a second replica "
                "running without the site's lease?)") from exc
        except errors.NotFoundError as exc:
            self.conflicted = True
            raise errors.StateConflictError(
                f"{self.where}: the state of site {self.site!r} was deleted since this "
                "reconciler read it; not recreated") from exc
        except errors.ClusterError as exc:
            raise errors.StateError(
                f"{self.where}: cannot write the state ({exc}); the previous state is "
                "kept") from exc
        self._version = str(stored["metadata"]["resourceVersion"])


def sites_in(*, target: cluster.Cluster, namespace: str) -> list[str]:
    """The sites that have a state ConfigMap in `namespace`."""
    try:
        found = target.list(api_version="v1", kind="ConfigMap", namespace=namespace,
                            label_selector=LABEL_STATE_OF)
    except errors.ClusterError as exc:
        raise errors.StateError(f"cannot list the state in namespace {namespace}: {exc}") \
            from exc
    return sorted(str((o["metadata"].get("labels") or {}).get(LABEL_STATE_OF))
                  for o in found if contract.SITE_NAME_PATTERN.match(
                      str((o["metadata"].get("labels") or {}).get(LABEL_STATE_OF, ""))))
