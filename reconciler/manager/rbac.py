"""The RBAC a site's manifests need: `reconciler rbac`. Called by cli.

Reads each site's bundle as sync reads it (`bundle.load()`: `sites/<site>/manifests/` and
`crds/`), maps every apiVersion/kind to its resource offline, and makes the ClusterRole
(contract.SITE_CLUSTER_ROLE) and its ClusterRoleBinding to the reconciler's service
account that deploy/ installs. A kind's resource (its plural) comes from the discovery of
kube-apiserver v1.37.2 the embedded cluster ships (a built-in kind), from the
`spec.names.plural` of a CRD in `crds/` or among the manifests (a custom kind), or else is
guessed as Kubernetes guesses it (`meta.UnsafeGuessKindToResource`) and named in a note.

What the reconciler does to a site's objects, as RBAC verbs: server-side apply is
`patch` (and `create` for an object that does not exist yet), health and prune `get`,
the inventory and adoption checks `list` (across namespaces, by label), prune and replace
`delete`. The CRDs of `crds/` are shared and never pruned: `get`, `list`, `create`,
`patch`. The reconciler's own needs (state ConfigMaps, Leases, Events) are not here:
deploy/ grants them in the Role and ClusterRole contract.OWN_ROLE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reconciler import contract, errors, kubekinds
from reconciler.repo import bundle, documents
from reconciler.repo import tree as trees

SITE_VERBS = ("create", "delete", "get", "list", "patch")
SHARED_CRD_VERBS = ("create", "get", "list", "patch")
RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"


@dataclasses.dataclass(frozen=True)
class Options:
    """Which sites, and the names of what to print."""

    root: Path
    sites: tuple[str, ...]
    name: str = contract.SITE_CLUSTER_ROLE
    namespace: str = contract.DEPLOY_NAMESPACE  # of the service account
    service_account: str = contract.SERVICE_ACCOUNT
    limits: bundle.Limits = dataclasses.field(default_factory=bundle.Limits)


@dataclasses.dataclass(frozen=True)
class Kind:
    """One apiVersion/kind the manifests hold, and the resource it maps to."""

    api_version: str
    kind: str
    resource: str
    source: str  # built-in | crds/<file> | sites/<site>/manifests/<file> | guessed
    first_seen: str  # the file and line of the first manifest of this kind

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


@dataclasses.dataclass(frozen=True)
class Rule:
    """One PolicyRule: some resources of one API group, and the verbs on them."""

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Result:
    """The rules the sites need, what each kind mapped to, and what was guessed."""

    root: str  # the checkout, as given
    sites: tuple[str, ...]
    name: str
    namespace: str
    service_account: str
    rules: tuple[Rule, ...]
    kinds: tuple[Kind, ...]
    shared_crds: bool  # crds/ holds CRDs: the apiextensions rule for them is in `rules`

    @property
    def guessed(self) -> tuple[Kind, ...]:
        return tuple(k for k in self.kinds if k.source == GUESSED)


GUESSED = "guessed"


def run(*, options: Options) -> Result:
    """The rules for the sites of the checkout at `options.root`. Raises UsageError for a
    missing checkout or site, BundleError or ValidationError for a site sync would refuse
    to read."""
    root = options.root
    if not root.is_dir():
        raise errors.UsageError(f"{root}: no such directory")
    if not options.sites:
        raise errors.UsageError("name at least one site (--site)")
    tree = trees.DirTree(root)
    manifests: list[documents.Manifest] = []
    crds: tuple[documents.Manifest, ...] = ()
    for site in dict.fromkeys(options.sites):
        bundle.check_site_name(site)
        if not tree.is_dir(contract.site_dir(site)):
            raise bundle.missing_site(tree, site, where=str(root), kind=errors.UsageError)
        loaded = bundle.load(tree=tree, site=site, limits=options.limits)
        manifests.extend(loaded.manifests)
        crds = loaded.crds  # the same for every site
    plurals = _crd_plurals([*crds, *manifests])
    kinds = _kinds(manifests, plurals=plurals)
    wanted: dict[tuple[str, str], set[str]] = {}
    for kind in kinds:
        wanted.setdefault((kind.group, kind.resource), set()).update(SITE_VERBS)
    if crds:
        key = (documents.CRD_GROUP, "customresourcedefinitions")
        wanted.setdefault(key, set()).update(SHARED_CRD_VERBS)
    return Result(root=str(root), sites=tuple(dict.fromkeys(options.sites)), name=options.name,
                  namespace=options.namespace, service_account=options.service_account,
                  rules=_rules(wanted), kinds=kinds, shared_crds=bool(crds))


def _rules(wanted: Mapping[tuple[str, str], set[str]]) -> tuple[Rule, ...]:
    """One rule per API group and set of verbs, sorted by group (core first), then verbs;
    resources and verbs sorted within each."""
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (group, resource), verbs in wanted.items():
        grouped.setdefault((group, tuple(sorted(verbs))), []).append(resource)
    return tuple(Rule(group=group, resources=tuple(sorted(resources)), verbs=verbs)
                 for (group, verbs), resources in sorted(grouped.items()))


def _kinds(manifests: Iterable[documents.Manifest], *,
           plurals: Mapping[tuple[str, str], tuple[str, str]]) -> tuple[Kind, ...]:
    """Each apiVersion/kind once, resolved: a CRD's plural first (a CRD may define a kind
    in a group Kubernetes serves too only if the group has a dot, so the two never
    collide), then the built-in table, else a guess. Sorted by group, kind, version."""
    found: dict[tuple[str, str], Kind] = {}
    for manifest in manifests:
        api_version, kind = manifest.api_version, manifest.kind
        if not api_version or not kind or (api_version, kind) in found:
            continue  # a manifest without them is validate's to report
        group = api_version.rpartition("/")[0]
        if (group, kind) in plurals:
            resource, source = plurals[(group, kind)]
        elif (group, kind) in kubekinds.builtin_resources():
            resource, source = kubekinds.builtin_resources()[(group, kind)], "built-in"
        else:
            resource, source = guess_resource(kind), GUESSED
        found[(api_version, kind)] = Kind(api_version=api_version, kind=kind,
                                          resource=resource, source=source,
                                          first_seen=manifest.location.position)
    return tuple(sorted(found.values(), key=lambda k: (k.group, k.kind, k.api_version)))


def _crd_plurals(manifests: Iterable[documents.Manifest]) -> dict[tuple[str, str], tuple[str, str]]:
    """(group, kind) -> (plural, the file that defines it), from every CRD manifest."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for manifest in manifests:
        if not documents.is_crd(manifest):
            continue
        spec = manifest.body.get("spec")
        names = spec.get("names") if isinstance(spec, Mapping) else None
        group = spec.get("group") if isinstance(spec, Mapping) else None
        if not isinstance(names, Mapping) or not isinstance(group, str):
            continue  # a malformed CRD: validate names it
        kind, plural = names.get("kind"), names.get("plural")
        if isinstance(kind, str) and isinstance(plural, str) and plural:
            found.setdefault((group, kind), (plural, manifest.location.file))
    return found


def guess_resource(kind: str) -> str:
    """The plural Kubernetes guesses for a kind (apimachinery's UnsafeGuessKindToResource),
    which CRDs follow by convention: lower case; `-s` -> `-ses`, `-y` -> `-ies`, else `-s`."""
    lower = kind.lower()
    if not lower:
        return lower
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


def manifests(result: Result) -> list[dict[str, Any]]:
    """The ClusterRole and its ClusterRoleBinding to the reconciler's service account."""
    labels = {"app.kubernetes.io/name": "intent-reconciler",
              "app.kubernetes.io/component": "site-rbac"}
    role = {
        "apiVersion": RBAC_API_VERSION, "kind": "ClusterRole",
        "metadata": {"name": result.name, "labels": labels},
        "rules": [{"apiGroups": [rule.group], "resources": list(rule.resources),
                   "verbs": list(rule.verbs)} for rule in result.rules],
    }
    binding = {
        "apiVersion": RBAC_API_VERSION, "kind": "ClusterRoleBinding",
        "metadata": {"name": result.name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": result.name},
        "subjects": [{"kind": "ServiceAccount", "name": result.service_account,
                      "namespace": result.namespace}],
    }
    return [role, binding]
