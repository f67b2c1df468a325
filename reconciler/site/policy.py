"""What a site's operator lets the repository write: namespaces, kinds, adoption. Pure,
but for served_scope(), which asks the cluster's (cached) discovery.

Called by pipeline.evaluate() and plan (check(): the whole revision, before anything is
applied), prune (outside(): an object outside the policy is never deleted), rollout
(outside() again on the ref each write resolves to, a last guard; adoption() and
crd_adoption(): an existing object that is not the site's, or a CRD that is not the
reconciler's, is not taken over silently) and the CLI (kind_rule_problem()). The policy is
the operator's (flags of `sync`, `run` and `plan`), never the repository's. docs/policy.md.

Namespaces: `--allow-namespace` (when given, only these), `--deny-namespace`; both take
shell patterns (`sfo-*`). DEFAULT_DENIED_NAMESPACES are denied unless an operator names
one exactly in `--allow-namespace` (a pattern does not lift them). A Namespace object
counts as the namespace it names; a namespaced object without a namespace is in
`default`; other cluster-scoped objects have none, so only the kind rules apply to them.

Kinds: `--allow-kind` (when given, only these), `--deny-kind`, each spelled `Kind` (that
kind in every API group, the core group included) or `Kind.group` (in that group only, as
Kubernetes spells a GroupKind: `ClusterRoleBinding.rbac.authorization.k8s.io`). A deny
wins over an allow. A rule that could never match what Kubernetes sends (a lower-case kind,
a plural of a built-in kind, a group cut short such as `rbac`) is refused when the policy
is made (kind_rule_problem()), so a rule never silently denies nothing.

Scopes: whether a kind without `metadata.namespace` lands in `default` is the cluster's
answer when the cluster serves the kind; the repository's CRDs tell only for a kind the
cluster does not serve, and only CRDs that will be applied (crds/ and the manifests that
carry the intent id; a CRD the fence drops is never applied and tells nothing).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from reconciler import cluster, contract, errors, kubekinds
from reconciler.repo import documents
from reconciler.site import fence

DEFAULT_DENIED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")

RULE_NAMESPACE = "policy-namespace"
RULE_KIND = "policy-kind"
RULE_ADOPTION = "adoption"

NAMESPACE_PATTERN = re.compile(r"^[a-z0-9*?\[\]-]([-a-z0-9*?\[\].]{0,62})$")
KIND_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}(\.[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?$")

# Whether the cluster serves a kind namespaced, by (apiVersion, kind): True or False when
# it serves the kind, None when it does not or cannot say now (served_scope()).
Scope = Callable[[str, str], "bool | None"]


@dataclasses.dataclass(frozen=True)
class Policy:
    """A site's namespace and kind rules; empty allow lists allow everything not denied."""

    allow_namespaces: tuple[str, ...] = ()
    deny_namespaces: tuple[str, ...] = ()
    allow_kinds: tuple[str, ...] = ()
    deny_kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """A kind rule that could never match is refused here too (the CLI refuses it
        first, as a usage error): a policy never holds a rule that silently denies
        nothing."""
        for flag, rules in (("--allow-kind", self.allow_kinds),
                            ("--deny-kind", self.deny_kinds)):
            for rule in rules:
                problem = kind_rule_problem(rule)
                if problem:
                    raise errors.UsageError(f"{flag} {rule!r}: {problem}")

    def namespace_refused(self, namespace: str) -> str:
        """Why an object in `namespace` is outside the policy; empty when it is inside."""
        for pattern in self.deny_namespaces:
            if fnmatch.fnmatchcase(namespace, pattern):
                return f"namespace {namespace} is denied (--deny-namespace {pattern})"
        if namespace in DEFAULT_DENIED_NAMESPACES and namespace not in self.allow_namespaces:
            return (f"namespace {namespace} is denied by default (lift it with "
                    f"--allow-namespace {namespace})")
        if self.allow_namespaces and not any(fnmatch.fnmatchcase(namespace, p)
                                             for p in self.allow_namespaces):
            return (f"namespace {namespace} is not allowed (--allow-namespace "
                    f"{', '.join(self.allow_namespaces)})")
        return ""

    def kind_refused(self, *, group: str, kind: str) -> str:
        """Why an object of `kind` in `group` is outside the policy; empty when inside."""
        spelled = f"{kind}.{group}" if group else kind
        for rule in self.deny_kinds:
            if _kind_matches(rule, group=group, kind=kind):
                return f"kind {spelled} is denied (--deny-kind {rule})"
        if self.allow_kinds and not any(_kind_matches(r, group=group, kind=kind)
                                        for r in self.allow_kinds):
            return f"kind {spelled} is not allowed (--allow-kind {', '.join(self.allow_kinds)})"
        return ""


DEFAULT = Policy()  # no flags: only DEFAULT_DENIED_NAMESPACES are refused


def kind_rule_problem(rule: str) -> str:
    """Why a `--allow-kind`/`--deny-kind` rule could never match what Kubernetes sends;
    empty when it is well spelled. A Kind is singular CamelCase, as in a manifest's
    `kind:` (ClusterRoleBinding, not clusterrolebinding nor ClusterRoleBindings); a group is
    the full API group (rbac.authorization.k8s.io, not rbac), or one Kubernetes serves
    without a dot (apps, batch); the core group is written with no group at all."""
    spelling = ("write the Kind singular and CamelCase as in a manifest's `kind:`, "
                "optionally followed by .group, the full API group")
    if not KIND_PATTERN.match(rule):
        return (f"not a kind: {spelling} (e.g. ClusterRoleBinding or "
                "ClusterRoleBinding.rbac.authorization.k8s.io)")
    kind, dot, group = rule.partition(".")
    known = kubekinds.builtin_resources()
    if not kind[0].isupper():
        match = sorted({k for (_, k), plural in known.items()
                        if kind.lower() in (k.lower(), plural)})
        hint = f" (did you mean {match[0]}{dot}{group}?)" if match else ""
        return f"kind {kind!r} does not start with a capital letter: {spelling}{hint}"
    if dot and "." not in group and group not in kubekinds.BUILTIN_GROUPS:
        full = sorted(g for g in kubekinds.BUILTIN_GROUPS if g.startswith(group + "."))
        hint = (f" (did you mean {kind}.{full[0]}?)" if full else
                f" (the core group is written with no group: {kind})" if group in ("core", "v1")
                else "")
        return (f"group {group!r} is not a full API group: a custom group has a dot "
                f"(x.example.com), a built-in one is spelled in full{hint}")
    kinds = {k for (g, k) in known if not dot or g == group}
    if kind.endswith("s") and kind not in kinds and kind[:-1] in kinds:
        return (f"kind {kind!r} looks like a plural: the Kind is singular, write "
                f"{kind[:-1]}{dot}{group} (a custom kind of that name: spell it with its "
                "group, Kind.x.example.com)")
    return ""


def _kind_matches(rule: str, *, group: str, kind: str) -> bool:
    """`Kind` matches the kind in every group; `Kind.group` only in that group."""
    name, dot, rule_group = rule.partition(".")
    return name == kind and (not dot or rule_group == group)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """An object outside the policy: where it is written, which object, the rule, why."""

    where: str  # file:line
    object: str  # Kind/namespace/name
    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.object}: {self.reason} (rule: {self.rule})"


def scopes(manifests: Iterable[documents.Manifest]) -> dict[tuple[str, str], bool]:
    """Whether each kind the repository's CRDs serve is namespaced, by (group, kind)."""
    return {(s.group, s.kind): s.namespaced for m in manifests
            for s in documents.served_kinds(m)}


def served_scope(target: cluster.Cluster | None) -> Scope | None:
    """The cluster's answer to whether it serves a kind namespaced (its discovery, which
    the adapter caches), or None without a cluster (plan offline)."""
    if target is None:
        return None
    cluster_target = target

    def scope(api_version: str, kind: str) -> bool | None:
        try:
            return cluster_target.resource(api_version=api_version, kind=kind).namespaced
        except (errors.NotFoundError, errors.GroupUnavailableError):
            return None  # not served (yet), or not now: the repository's CRDs tell

    return scope


def _applied_scopes(manifests: Iterable[documents.Manifest]) -> dict[tuple[str, str], bool]:
    """scopes() of the CRDs that will be applied, namespaced when any of them says so (two
    CRDs of one kind that disagree cannot both be applied; the stricter answer holds)."""
    known: dict[tuple[str, str], bool] = {}
    for manifest in manifests:
        for served in documents.served_kinds(manifest):
            key = (served.group, served.kind)
            known[key] = known.get(key, False) or served.namespaced
    return known


def namespace_of(manifest: documents.Manifest, *,
                 known: Mapping[tuple[str, str], bool],
                 served: Scope | None = None) -> str | None:
    """The namespace the policy holds an object to: a Namespace's own name, the object's
    namespace, `default` for a namespaced kind written without one; None for any other
    cluster-scoped object.

    A kind's scope is the cluster's when it serves the kind (`served`); else Kubernetes'
    own for a built-in kind; else the one the CRDs that will be applied give (`known`);
    a kind none of them knows counts as namespaced, as the server defaults it."""
    group = manifest.api_version.rpartition("/")[0]
    if (group, manifest.kind) == ("", "Namespace"):
        return manifest.name
    if manifest.namespace:
        return manifest.namespace
    namespaced = served(manifest.api_version, manifest.kind) if served is not None else None
    if namespaced is None and kubekinds.serves_itself(group):
        namespaced = kubekinds.namespaced(group=group, kind=manifest.kind)
    if namespaced is None:
        namespaced = known.get((group, manifest.kind), True)
    return "default" if namespaced else None


def check(*, policy: Policy, manifests: Sequence[documents.Manifest],
          crds: Sequence[documents.Manifest] = (), intent_id: str,
          served: Scope | None = None) -> tuple[Refusal, ...]:
    """Every object of the revision (the site's manifests and crds/) outside the policy,
    in file order; empty when the revision may be applied.

    `intent_id` is the revision's intent: only the site's manifests carrying it are
    applied (fence.split()), so only their CRDs, with those of crds/, may tell the scope
    of a kind the cluster does not serve. `served` is the cluster's answer
    (served_scope()), which wins for every kind it serves; None without a cluster."""
    applied, _ = fence.split(intent_id=intent_id, manifests=manifests)
    known = _applied_scopes([*crds, *applied])
    refusals: list[Refusal] = []
    for manifest in [*crds, *manifests]:
        group = manifest.api_version.rpartition("/")[0]
        where, what = manifest.location.position, manifest.describe()
        reason = policy.kind_refused(group=group, kind=manifest.kind)
        if reason:
            refusals.append(Refusal(where=where, object=what, rule=RULE_KIND, reason=reason))
            continue
        namespace = namespace_of(manifest, known=known, served=served)
        reason = policy.namespace_refused(namespace) if namespace is not None else ""
        if reason:
            refusals.append(Refusal(where=where, object=what, rule=RULE_NAMESPACE,
                                    reason=reason))
    return tuple(refusals)


def outside(*, policy: Policy, ref: cluster.ObjectRef) -> str:
    """Why a live object is outside `policy`: prune leaves it alone, and rollout does not
    write it (a last guard, on the ref the cluster resolves); empty when it is inside.
    The ref's namespace is the one the server holds (a Namespace counts as its own)."""
    reason = policy.kind_refused(group=ref.group, kind=ref.kind)
    if reason:
        return f"{reason} (rule: {RULE_KIND})"
    namespace = ref.name if (ref.group, ref.kind) == ("", "Namespace") else ref.namespace
    reason = policy.namespace_refused(namespace) if namespace else ""
    return f"{reason} (rule: {RULE_NAMESPACE})" if reason else ""


def adoption(*, manifest: documents.Manifest, live: Mapping[str, Any] | None, site: str,
             ref: cluster.ObjectRef | None = None) -> Refusal | None:
    """The refusal to take over `live`, an existing object the manifest describes that was
    not applied for `site` (no `reconciler.dev/site: <site>` label), unless the manifest
    says `reconciler.dev/adopt: enabled`. None when it is the site's, absent, or adopted."""
    if live is None:
        return None
    labels = (live.get("metadata") or {}).get("labels") or {}
    found = labels.get(contract.LABEL_SITE)
    if found == site:
        return None
    if str(manifest.annotations.get(contract.ANNOTATION_ADOPT, "")) == contract.ADOPT_ENABLED:
        return None
    label = (f"it carries {contract.LABEL_SITE}={found}, another site's" if found
             else f"it carries no {contract.LABEL_SITE} label")
    return Refusal(
        where=manifest.location.position, object=str(ref or manifest.describe()),
        rule=RULE_ADOPTION,
        reason=(f"exists and was not applied for site {site} ({label}); not taken over: "
                f"set the annotation {contract.ANNOTATION_ADOPT}: \"{contract.ADOPT_ENABLED}\" "
                "on the manifest to adopt it"))


def shared_ours(live: Mapping[str, Any]) -> bool:
    """Whether a live CRD of crds/ is the reconciler's: it carries
    `app.kubernetes.io/managed-by: reconciler` or any site's `reconciler.dev/site` label
    (crds/ is shared by every site, so any site's reconciler applied it)."""
    labels = (live.get("metadata") or {}).get("labels") or {}
    return (labels.get(contract.LABEL_MANAGED_BY) == contract.MANAGED_BY_VALUE
            or bool(labels.get(contract.LABEL_SITE)))


def crd_adoption(*, manifest: documents.Manifest, live: Mapping[str, Any] | None,
                 ref: cluster.ObjectRef | None = None) -> Refusal | None:
    """The refusal to take over `live`, an existing CRD a document of crds/ describes that
    the reconciler did not apply (shared_ours()), unless the document says
    `reconciler.dev/adopt: enabled`. None when it is the reconciler's, absent, or adopted."""
    if live is None or shared_ours(live):
        return None
    if str(manifest.annotations.get(contract.ANNOTATION_ADOPT, "")) == contract.ADOPT_ENABLED:
        return None
    return Refusal(
        where=manifest.location.position, object=str(ref or manifest.describe()),
        rule=RULE_ADOPTION,
        reason=(f"exists and was not applied by the reconciler (it carries neither "
                f"{contract.LABEL_MANAGED_BY}={contract.MANAGED_BY_VALUE} nor a "
                f"{contract.LABEL_SITE} label); not taken over: set the annotation "
                f"{contract.ANNOTATION_ADOPT}: \"{contract.ADOPT_ENABLED}\" on the CRD in "
                f"{contract.CRDS_DIR}/ to adopt it"))
