"""`reconciler validate`: check a repository checkout before it merges. Called by cli.

It reads what the sites will read, with the same loader and the same limits, but reports
every broken rule instead of stopping at the first: YAML syntax; the intent schema; the
object rules sync enforces; custom resources against the repository's CRDs (or the
schemas in `schemas/` when no CRD defines the kind); built-in kinds against Kubernetes'
own schemas; namespace scope; objects defined twice in a site; manifests whose intent
id is not their site's (a site would drop them); and documents of `crds/`, shared by every
site and outside the fence, that carry an intent id (every site refuses them). Each
finding names the file, line and column, the object, the JSON path and the rule. Many
files are checked in parallel processes, so ten thousand manifests take seconds.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from reconciler import contract, errors
from reconciler.manager import crdschema, kubeschema, positions
from reconciler.repo import bundle, documents, schemas
from reconciler.repo import tree as trees

log = logging.getLogger("reconciler")

Severity = schemas.Severity
PARALLEL_FROM = 200  # files; below this, worker start-up costs more than it saves


# The rules a site itself enforces: a revision with an error under one of these is refused
# by every site (sync stops before applying anything), so `intent publish` refuses to
# commit it. The other rules are review findings (the API server may still refuse the
# object; a site would still accept the intent).
SITE_REFUSES = frozenset({
    "yaml", "limit", "intent-missing", "intent", "schema", "intent-site", "manifest",
    "required-field", "metadata", "wave", "intent-id", "site-name", "crd-intent-id",
})


@dataclasses.dataclass(frozen=True)
class Options:
    """What to check."""

    root: Path
    sites: tuple[str, ...] | None = None  # None: every site
    strict: bool = False
    kube_version: str | None = None  # None: the newest installed
    jobs: int = 0  # worker processes; 0: one per CPU
    # What sync reads: --max-file-size and --max-site-size.
    limits: bundle.Limits = dataclasses.field(default_factory=bundle.Limits)


@dataclasses.dataclass(frozen=True)
class Report:
    """Every finding in the checked part of the repository."""

    root: str
    sites: tuple[str, ...]
    files: int
    documents: int
    kube_version: str
    findings: tuple[schemas.Finding, ...]
    seconds: float

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.WARNING)


@dataclasses.dataclass(frozen=True)
class _Job:
    path: PurePosixPath
    role: str  # intent | manifest | crd
    site: str | None


@dataclasses.dataclass(frozen=True)
class _Object:
    """What the cross-file checks need of one manifest."""

    location: documents.Location
    identity: tuple[str, str, str, str]  # group, kind, namespace ('' when cluster-scoped), name
    describe: str
    intent_id: str | None
    has_annotations: bool


@dataclasses.dataclass(frozen=True)
class _FileResult:
    path: str
    site: str | None
    documents: int
    findings: tuple[schemas.Finding, ...]
    objects: tuple[_Object, ...] = ()
    intent_id: str | None = None
    size: int = 0  # bytes read, for the limit per site


@dataclasses.dataclass(frozen=True)
class _Context:
    tree: trees.DirTree
    catalogs: Mapping[str | None, crdschema.Catalog]  # by site; None: crds/ alone
    kube_version: str
    limits: bundle.Limits


_context: _Context | None = None  # set before checking; worker processes inherit it


def run(*, options: Options) -> Report:
    """Check the repository checkout at `options.root`."""
    global _context
    started = time.monotonic()
    root = options.root
    if not root.is_dir():
        raise errors.UsageError(f"{root}: no such directory")
    tree = trees.DirTree(root)
    try:
        has_sites = tree.is_dir(contract.SITES_DIR)
    except errors.BundleError as exc:
        raise errors.UsageError(str(exc)) from exc
    if not has_sites:
        raise errors.UsageError(
            f"{root}: no {contract.SITES_DIR}/ folder; is this a fleet repository checkout?")
    try:
        kube_version = kubeschema.resolve_version(options.kube_version)
    except ValueError as exc:
        raise errors.UsageError(str(exc)) from exc

    findings: list[schemas.Finding] = []
    by_site = _site_files(tree)
    sites = _sites(tree, by_site, wanted=options.sites, where=str(root))
    limits = options.limits
    jobs = [_Job(path=p, role="crd", site=None) for p in _yaml_files(tree, contract.CRDS_DIR)]
    for site in sites:
        jobs.extend(_site_jobs(tree, site=site, files=by_site[site], findings=findings,
                               limits=limits))

    _context = _Context(tree=tree, catalogs=_catalogs(tree, jobs, limits=limits),
                        kube_version=kube_version, limits=limits)
    results = _check_all(jobs, workers=options.jobs or os.cpu_count() or 1)
    for result in results:
        findings.extend(result.findings)
    findings.extend(_site_sizes(results, limits=limits))
    findings.extend(_cross_file(results, strict=options.strict))
    findings.sort(key=lambda f: (f.location.file, f.line or f.location.line or 0, f.column or 0,
                                 f.path, f.rule))
    return Report(root=str(root), sites=tuple(sites), files=len(jobs),
                  documents=sum(r.documents for r in results), kube_version=kube_version,
                  findings=tuple(findings), seconds=time.monotonic() - started)


def _site_files(tree: trees.DirTree) -> dict[str, list[PurePosixPath]]:
    """Every file below sites/, by site."""
    by_site: dict[str, list[PurePosixPath]] = collections.defaultdict(list)
    for path in _listing(tree, contract.SITES_DIR):
        if len(path.parts) > 2:
            by_site[path.parts[1]].append(path)
    return by_site


def _sites(tree: trees.DirTree, by_site: Mapping[str, list[PurePosixPath]], *,
           wanted: Sequence[str] | None, where: str) -> list[str]:
    """The sites to check: every one, or those named (each must be there)."""
    if wanted is None:
        return sorted(by_site)
    for site in wanted:
        if site not in by_site:
            raise bundle.missing_site(tree, site, where=where, kind=errors.UsageError)
    return list(dict.fromkeys(wanted))


def _listing(tree: trees.DirTree, folder: PurePosixPath) -> list[PurePosixPath]:
    try:
        return list(tree.files(folder))
    except errors.BundleError as exc:
        raise errors.UsageError(str(exc)) from exc


def _yaml_files(tree: trees.DirTree, folder: PurePosixPath) -> list[PurePosixPath]:
    return [p for p in _listing(tree, folder) if p.suffix in contract.MANIFEST_SUFFIXES]


def _site_jobs(tree: trees.DirTree, *, site: str, files: Sequence[PurePosixPath],
               findings: list[schemas.Finding], limits: bundle.Limits) -> list[_Job]:
    intent = contract.intent_path(site)
    manifests = contract.manifests_dir(site)
    try:
        bundle.check_site_name(site)
    except errors.UsageError as exc:  # a finding here: the folder exists, the name is wrong
        findings.append(_file_finding(str(contract.site_dir(site)), rule="site-name",
                                      message=str(exc)))
    jobs = []
    if intent in files:
        jobs.append(_Job(path=intent, role="intent", site=site))
    else:
        findings.append(_file_finding(str(intent), rule="intent-missing",
                                      message="missing; every site needs an intent file "
                                              f"(kind {contract.INTENT_KIND})"))
    for path in files:
        if manifests not in path.parents:
            if path != intent and path.suffix in contract.MANIFEST_SUFFIXES:
                findings.append(_file_finding(
                    str(path), rule="ignored-file", severity=Severity.WARNING,
                    message=f"not read by the reconciler: a site's manifests live in "
                            f"{manifests}/"))
            continue
        if path.suffix in contract.MANIFEST_SUFFIXES:
            jobs.append(_Job(path=path, role="manifest", site=site))
        else:
            findings.append(_file_finding(
                str(path), rule="ignored-file", severity=Severity.WARNING,
                message="not read by the reconciler: only "
                        f"{' and '.join(contract.MANIFEST_SUFFIXES)} files are manifests"))
    limit = limits.max_files
    count = sum(1 for job in jobs if job.role == "manifest")
    if count > limit:
        findings.append(_file_finding(
            f"{manifests}/", rule="limit",
            message=f"{count} manifest files, over the limit of {limit} per site"))
    return jobs


def _file_finding(file: str, *, rule: str, message: str,
                  severity: Severity = Severity.ERROR, line: int | None = None,
                  column: int | None = None) -> schemas.Finding:
    return schemas.Finding(location=documents.Location(file=file, document=0), path="$",
                            message=message, rule=rule, severity=severity, line=line,
                            column=column)


def _catalogs(tree: trees.DirTree, jobs: Sequence[_Job], *,
              limits: bundle.Limits) -> dict[str | None, crdschema.Catalog]:
    """The CRDs each site's cluster gets: those of crds/, plus any in the site's own
    manifests. (Errors in those files are reported when the files are checked.)"""
    shared: list[documents.Manifest] = []
    own: dict[str | None, list[documents.Manifest]] = collections.defaultdict(list)
    for job in jobs:
        if job.role == "intent":
            continue
        try:
            data = tree.read(job.path, max_bytes=limits.max_file_bytes)
            if job.role == "manifest" and documents.CRD_KIND.encode() not in data:
                continue
            docs = bundle.parse_documents(data, file=str(job.path), limits=limits)
        except errors.BundleError:
            continue
        for location, doc in docs:
            try:
                manifests = bundle.list_items(doc, location=location)
            except bundle.ShapeError:
                continue
            for manifest in manifests:
                if documents.is_crd(manifest):
                    (shared if job.role == "crd" else own[job.site]).append(manifest)
    catalogs: dict[str | None, crdschema.Catalog] = {}
    for site in {None, *(job.site for job in jobs)}:
        catalog = catalogs[site] = crdschema.Catalog()
        for manifest in [*shared, *own.get(site, [])]:
            catalog.add(manifest)
    return catalogs


def _check_all(jobs: Sequence[_Job], *, workers: int) -> list[_FileResult]:
    if workers < 2 or len(jobs) < PARALLEL_FROM or sys.platform != "linux":
        return [_check_file(job) for job in jobs]
    # fork: the workers inherit the catalog and the imported modules; nothing to pickle in.
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers,
                                                mp_context=context) as pool:
        return list(pool.map(_check_file, jobs, chunksize=max(1, len(jobs) // (workers * 8))))


def _check_file(job: _Job) -> _FileResult:
    """Every check that needs one file only; runs in a worker process."""
    assert _context is not None
    file = str(job.path)
    try:
        data = bundle.read_file(_context.tree, job.path, limits=_context.limits)
        docs = bundle.parse_documents(data, file=file, limits=_context.limits)
    except errors.YAMLSyntaxError as exc:
        return _FileResult(path=file, site=job.site, documents=0, findings=(_file_finding(
            file, rule="yaml", message=f"invalid YAML: {exc.problem}", line=exc.line,
            column=exc.column),))
    except errors.BundleError as exc:
        message = str(exc).removeprefix(f"{file}: ")
        return _FileResult(path=file, site=job.site, documents=0,
                           findings=(_file_finding(file, rule="limit", message=message),))
    if job.role == "intent":
        return _check_intent(job, data=data, docs=docs)
    findings: list[schemas.Finding] = []
    objects: list[_Object] = []
    for location, doc in docs:
        problems: list[bundle.ShapeError] = []
        try:
            manifests = bundle.list_items(doc, location=location, problems=problems)
        except bundle.ShapeError as exc:  # the document itself
            problems, manifests = [exc], []
        findings.extend(schemas.Finding(
            location=problem.location, path="$", rule="manifest", message=problem.problem,
            keys=problem.location.item_keys) for problem in problems)
        for manifest in manifests:
            found, identity = _check_manifest(manifest, catalog=_context.catalogs[job.site])
            if job.role == "crd":  # shared by every site: never fenced, so never tagged
                found.extend(schemas.check_shared(manifest, site=None))
            findings.extend(_in_document(f) for f in found)
            if identity is not None:
                objects.append(_Object(location=manifest.location, identity=identity,
                                       describe=manifest.describe(),
                                       intent_id=manifest.intent_id,
                                       has_annotations=isinstance(
                                           manifest.metadata.get("annotations"), Mapping)))
    return _FileResult(path=file, site=job.site, documents=len(docs),
                       findings=tuple(positions.place(findings, data=data)),
                       objects=tuple(objects), size=len(data))


def _in_document(finding: schemas.Finding) -> schemas.Finding:
    """A finding's keys from its document's root, to find its line: a List's object is at
    `items[i]` of its document. (Its JSON path stays the object's own.)"""
    if not finding.location.items:
        return finding
    return dataclasses.replace(finding, keys=(*finding.location.item_keys, *finding.keys))


def _site_sizes(results: Sequence[_FileResult], *,
                limits: bundle.Limits) -> list[schemas.Finding]:
    """A finding for each site whose files (crds/ included, as sync reads them) hold more
    than the limit per site."""
    shared = sum(r.size for r in results if r.site is None)
    by_site: dict[str, int] = collections.defaultdict(int)
    for result in results:
        if result.site is not None:
            by_site[result.site] += result.size
    found = []
    for site, size in sorted(by_site.items()):
        total = size + shared
        if total > limits.max_site_bytes:
            found.append(_file_finding(
                f"{contract.site_dir(site)}/", rule="limit",
                message=f"site {site}'s files (with {contract.CRDS_DIR}/) hold {total} bytes, "
                        f"over the limit of {bundle.describe_size(limits.max_site_bytes)} per "
                        "site; raise it with "
                        f"{bundle.SITE_SIZE_FLAG}"))
    return found


def _check_intent(job: _Job, *, data: bytes,
                  docs: list[tuple[documents.Location, Any]]) -> _FileResult:
    file = str(job.path)
    if len(docs) != 1:
        return _FileResult(path=file, site=job.site, documents=len(docs), findings=(
            _file_finding(file, rule="intent", message="expected exactly one YAML document, "
                                                       f"found {len(docs)}"),))
    location, doc = docs[0]
    assert job.site is not None
    findings = schemas.check_intent(doc, location=location, site=job.site)
    intent_id = None if findings else str(doc["spec"]["id"])
    return _FileResult(path=file, site=job.site, documents=1,
                       findings=tuple(positions.place(findings, data=data)),
                       intent_id=intent_id)


def _check_manifest(
    manifest: documents.Manifest, *, catalog: crdschema.Catalog,
) -> tuple[list[schemas.Finding], tuple[str, str, str, str] | None]:
    """One manifest's own rules; and its identity, when it has one, for the duplicate check."""
    assert _context is not None
    group, _ = crdschema.split_api_version(manifest.api_version)
    kind = manifest.kind
    by_crd = catalog.defines(group=group, kind=kind)
    # Exactly what sync checks (object rules, and schemas/ for the kinds it has one for)...
    findings = schemas.check_manifest(manifest)
    if any(f.rule != "schema" for f in findings):
        return findings, None  # the object's own fields are broken; nothing more to say
    # ...then what the API server will check.
    namespaced: bool | None = None
    if by_crd:
        shipped = {(f.path, f.message) for f in findings}
        findings.extend(f for f in catalog.check(manifest)
                        if (f.path, f.message.split(") ", 1)[-1]) not in shipped)
        namespaced = catalog.namespaced(group=group, kind=kind)
    elif kubeschema.is_builtin_group(group):
        found = kubeschema.check(manifest, version=_context.kube_version)
        if found is not None:
            findings.extend(found)
            namespaced = kubeschema.namespaced(group=group, kind=kind)
        else:
            core = "." not in group
            findings.append(schemas.Finding(
                location=manifest.location, path="$.kind", keys=("kind",),
                rule="unknown-kind", object=manifest.describe(),
                severity=Severity.ERROR if core else Severity.WARNING,
                message=(f"Kubernetes {_context.kube_version} serves no kind {kind} in "
                         f"{manifest.api_version}" if core else
                         f"no CRD in the repository defines {kind} in {manifest.api_version}, "
                         "and Kubernetes does not serve it; its fields are not checked")))
    elif not schemas.has_shipped_schema(api_version=manifest.api_version, kind=kind):
        findings.append(schemas.Finding(
            location=manifest.location, path="$.kind", keys=("kind",), rule="unknown-kind",
            object=manifest.describe(), severity=Severity.WARNING,
            message=f"no CRD in the repository and no schema in schemas/ for {kind} in "
                    f"{manifest.api_version}; its fields are not checked"))
    namespace = manifest.namespace or ""
    if namespaced is True and not namespace:
        findings.append(schemas.Finding(
            location=manifest.location, path="$.metadata", keys=("metadata",),
            rule="namespace-missing", object=manifest.describe(),
            message=f"{kind} is namespaced but has no metadata.namespace: it would land in "
                    "namespace 'default' of whatever cluster the site runs"))
    elif namespaced is False and namespace:
        findings.append(schemas.Finding(
            location=manifest.location, path="$.metadata.namespace",
            keys=("metadata", "namespace"), rule="namespace-ignored",
            object=manifest.describe(), severity=Severity.WARNING,
            message=f"{kind} is cluster-scoped: metadata.namespace {namespace!r} means nothing"))
        namespace = ""
    return findings, (group, kind, namespace, manifest.name)


def _cross_file(results: Sequence[_FileResult], *, strict: bool) -> list[schemas.Finding]:
    """Duplicates within a site, and whether each manifest carries its site's intent id."""
    found: list[schemas.Finding] = []
    intents = {r.site: r.intent_id for r in results if r.intent_id}
    by_site: dict[str | None, list[_Object]] = collections.defaultdict(list)
    for result in results:
        by_site[result.site].extend(result.objects)
    for site, objects in by_site.items():
        # Twice with the same intent id: both would be applied. With different ids one is
        # stale, which intent-mismatch reports (the staged "manifests first" workflow).
        first: dict[tuple[tuple[str, str, str, str], str | None], _Object] = {}
        for obj in objects:
            earlier = first.setdefault((obj.identity, obj.intent_id), obj)
            if earlier is not obj:
                scope = f"site {site}" if site else contract.CRDS_DIR.as_posix() + "/"
                found.append(schemas.Finding(
                    location=obj.location, path="$.metadata.name",
                    keys=(*obj.location.item_keys, "metadata", "name"),
                    rule="duplicate", object=obj.describe,
                    message=f"{obj.describe} is defined twice in {scope}: first at "
                            f"{earlier.location}"))
        intent_id = intents.get(site)
        if site is None or intent_id is None:
            continue
        for obj in objects:
            if obj.intent_id == intent_id:
                continue
            keys: tuple[str, ...] = ("metadata", "annotations", contract.ANNOTATION_INTENT_ID)
            if obj.intent_id is None:
                keys = ("metadata", "annotations") if obj.has_annotations else ("metadata",)
                message = (f"carries no intent id; site {site} would drop it (its intent is "
                           f"{intent_id!r})")
            else:
                message = (f"carries intent {obj.intent_id!r}, not {intent_id!r} of site "
                           f"{site}: the site would drop it")
            found.append(schemas.Finding(
                location=obj.location, path=schemas.json_path(keys),
                keys=(*obj.location.item_keys, *keys), rule="intent-mismatch",
                object=obj.describe, message=message,
                severity=Severity.ERROR if strict else Severity.WARNING))
    return _place_all(found)


def _place_all(findings: Sequence[schemas.Finding]) -> list[schemas.Finding]:
    assert _context is not None
    by_file: dict[str, list[schemas.Finding]] = collections.defaultdict(list)
    for finding in findings:
        by_file[finding.location.file].append(finding)
    placed: list[schemas.Finding] = []
    for file, group in by_file.items():
        data = _context.tree.read(PurePosixPath(file), max_bytes=_context.limits.max_file_bytes)
        placed.extend(positions.place(group, data=data))
    return placed
