"""Read one site's intent and manifests at a revision, safely. Called by reconcile.sync_once().

YAML is parsed with ruamel.yaml's safe loader. Limits bound what a hostile or broken
commit can cost: file size, files per site, documents per file, and nodes per document
(which also stops alias "billion laughs" expansion). Every error names the file, the
line where YAML gives one, and the rule that was broken.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from ruamel import yaml as ruamel_yaml
from ruamel.yaml import constructor, nodes, resolver
from ruamel.yaml import error as yaml_error
from ruamel.yaml import tag as yaml_tag

from reconciler import contract, durations, errors
from reconciler.repo import documents, schemas
from reconciler.repo import tree as trees

_DOC_START = re.compile(rb"^---(?:[ \t]|\r?$)")
_DOC_END = re.compile(rb"^\.\.\.(?:[ \t]|\r?$)")
_NOT_CONTENT = re.compile(rb"^(?:[ \t]*(?:#.*)?\r?$|%)")  # blank, comment, or directive

DEFAULT_HEALTH_TIMEOUT = 600.0


@dataclasses.dataclass(frozen=True)
class Limits:
    """How much one revision of one site may hold."""

    max_file_bytes: int = 1024 * 1024
    max_files: int = 5000
    max_documents: int = 1000  # per file
    max_nodes: int = 100_000  # per document, counted with aliases expanded


def load(*, tree: trees.Tree, site: str, limits: Limits = Limits()) -> documents.Bundle:
    """Read `sites/<site>/intent.yaml`, its manifests and `crds/` from `tree`.

    Raises BundleError (unreadable, missing, unsafe) or ValidationError (the intent
    breaks its schema). Manifests are checked later, by schemas.check_manifests().
    """
    check_site_name(site)
    if not tree.is_dir(contract.site_dir(site)):
        raise missing_site(tree, site, where="the repository")
    intent = _load_intent(tree=tree, site=site, limits=limits)
    manifests = _load_folder(tree=tree, folder=contract.manifests_dir(site), limits=limits)
    crds = _load_folder(tree=tree, folder=contract.CRDS_DIR, limits=limits)
    return documents.Bundle(site=site, intent=intent, manifests=manifests, crds=crds)


def check_site_name(site: str) -> None:
    """Refuse a name no site can have (contract.SITE_NAME_PATTERN), before any path is built
    from it: the one check sync, plan and publish make. Raises UsageError."""
    if not contract.SITE_NAME_PATTERN.match(site):
        raise errors.UsageError(
            f"invalid site name {site!r}: use lower-case letters, digits, '-' and '.', "
            "at most 63, starting and ending with a letter or digit")


def site_names(tree: trees.Tree) -> list[str]:
    """The sites a tree holds: the folders of `sites/` with at least one file, sorted."""
    return sorted({p.parts[1] for p in tree.files(contract.SITES_DIR) if len(p.parts) > 2})


def missing_site(tree: trees.Tree, site: str, *, where: str,
                 kind: type[errors.ReconcilerError] = errors.BundleError,
                 ) -> errors.ReconcilerError:
    """The error for a site `tree` does not hold, naming the sites it does: the one "no such
    site" message. `where` says which tree (`the repository`, a checkout's path, `<url> at
    <ref>`); `kind` is BundleError, or UsageError where the user named the site. For the
    caller to raise: `raise bundle.missing_site(tree, site, where=...)`."""
    known = ", ".join(site_names(tree)) or "none"
    return kind(f"{contract.site_dir(site)}/: no such site in {where} (sites: {known})")


def _load_intent(*, tree: trees.Tree, site: str, limits: Limits) -> documents.Intent:
    path = contract.intent_path(site)
    if not tree.exists(path):
        raise errors.BundleError(
            f"{path}: missing; every site needs an intent file (kind {contract.INTENT_KIND})"
        )
    docs = parse_documents(tree.read(path, max_bytes=limits.max_file_bytes), file=str(path),
                                limits=limits)
    if len(docs) != 1:
        raise errors.BundleError(
            f"{path}: expected exactly one YAML document, found {len(docs)}"
        )
    location, doc = docs[0]
    findings = schemas.check_intent(doc, location=location, site=site)
    if findings:
        raise errors.ValidationError(
            f"{path}: invalid intent: " + "; ".join(f.short() for f in findings),
            findings=[str(f) for f in findings],
        )
    spec = doc["spec"]
    rollout = spec.get("rollout") or {}
    return documents.Intent(
        site=site,
        id=str(spec["id"]),
        sequence=spec.get("sequence"),
        description=str(spec.get("description", "")),
        health_timeout=durations.parse(rollout.get("healthTimeout", DEFAULT_HEALTH_TIMEOUT)),
        prune=bool(rollout.get("prune", True)),
        location=location,
    )


def _load_folder(
    *, tree: trees.Tree, folder: PurePosixPath, limits: Limits
) -> tuple[documents.Manifest, ...]:
    files = [p for p in tree.files(folder) if p.suffix in contract.MANIFEST_SUFFIXES]
    if len(files) > limits.max_files:
        raise errors.BundleError(
            f"{folder}/: {len(files)} files, over the limit of {limits.max_files}"
        )
    manifests: list[documents.Manifest] = []
    for path in files:
        data = tree.read(path, max_bytes=limits.max_file_bytes)
        for location, doc in parse_documents(data, file=str(path), limits=limits):
            if not isinstance(doc, Mapping):
                raise errors.BundleError(
                    f"{location}: a manifest must be a mapping (an object), "
                    f"not {type(doc).__name__}"
                )
            manifests.append(documents.Manifest(location=location, body=doc))
    return tuple(manifests)


def parse_documents(
    data: bytes, *, file: str, limits: Limits = Limits()
) -> list[tuple[documents.Location, Any]]:
    """Every non-empty YAML document in `data`, with where it starts."""
    loader = safe_loader(plain=b"&" not in data)
    try:
        docs = list(loader.load_all(data))
    except yaml_error.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = yaml_problem(exc)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        where = documents.position(file, line, column)
        # from None: the cause would carry ruamel's text, which quotes a duplicate key's
        # values (a Secret's data, say).
        raise errors.YAMLSyntaxError(f"{where}: invalid YAML: {problem}", file=file, line=line,
                                     column=column, problem=problem) from None
    except (yaml_error.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise errors.YAMLSyntaxError(f"{file}: invalid YAML: {exc}", file=file,
                                     problem=str(exc)) from exc
    except TypeError as exc:  # e.g. a list used as a mapping key: unhashable
        problem = f"unsupported mapping key ({exc})"
        raise errors.YAMLSyntaxError(f"{file}: invalid YAML: {problem}", file=file,
                                     problem=problem) from exc
    if len(docs) > limits.max_documents:
        raise errors.BundleError(
            f"{file}: {len(docs)} documents, over the limit of {limits.max_documents}"
        )
    starts = _document_lines(data, len(docs))
    found: list[tuple[documents.Location, Any]] = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        location = documents.Location(file=file, document=index, line=starts[index])
        # Without anchors nothing expands, and a document has fewer nodes than bytes.
        if b"&" in data or len(data) > limits.max_nodes:
            _check_size(doc, location=location, budget=limits.max_nodes)
        found.append((location, doc))
    return found


def yaml_problem(exc: yaml_error.MarkedYAMLError) -> str:
    """What a YAML error says is wrong, for a message: never a value of the document.

    ruamel quotes both values of a duplicate key (`found duplicate key "k" with value "v"
    (original value: "w")`), and they may be a Secret's: the key is kept, the values are
    dropped, with plain string operations on that one message format (to redact it, not
    to read structure from it). Stamping (manager.stamp) words its YAML errors with this too.
    """
    problem = str(exc.problem or exc.context or "invalid YAML")
    if isinstance(exc, constructor.DuplicateKeyError):
        problem = problem.partition(' with value "')[0]
    return problem


class _Resolver(resolver.VersionedResolver):
    """ruamel's YAML 1.2 resolver, with its rule table looked up once per load.

    The stock resolver finds its table again for every scalar, about a third of the load
    time of a manifest. The table depends only on the document's `%YAML` version, which
    the C parser does not report, so one lookup per loader gives the same tags.
    """

    _table: dict[Any, Any] | None = None

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is nodes.ScalarNode and implicit[0] and not self.yaml_path_resolvers:
            if self._table is None:
                self._table = self.versioned_resolver
            table = self._table
            for tag, regexp in (*table.get(value[0] if value else "", ()),
                                *table.get(None, ())):
                if regexp.match(value):
                    return _tag(tag)
            return self.DEFAULT_SCALAR_TAG
        return super().resolve(kind, value, implicit)


_STR, _SEQ, _MAP = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:seq",
                    "tag:yaml.org,2002:map")


class _NotPlain(Exception):
    """A document the plain builder leaves to ruamel's own constructor."""


class _Constructor(constructor.SafeConstructor):
    """ruamel's safe constructor, with a direct builder for plain documents.

    A manifest is mappings, sequences and scalars with the standard tags. For those the
    builder makes the same dicts, lists and values as ruamel does, without its per-node
    bookkeeping (a third of the load time). Anything else, such as a merge key, another tag,
    a duplicate key, or nesting too deep, goes to ruamel's constructor, with its errors.
    Documents with anchors never come here: `safe_loader(plain=False)` reads them, so an
    alias is built once, as ruamel builds it.
    """

    def construct_document(self, node: Any) -> Any:
        try:
            return self._build(node)
        except (_NotPlain, RecursionError):
            return super().construct_document(node)

    def _build(self, node: Any) -> Any:
        kind = type(node)
        tag = str(node.ctag)
        if kind is nodes.ScalarNode:
            if tag == _STR:
                return node.value
            build = self.yaml_constructors.get(tag)
            if build is None:
                raise _NotPlain
            return build(self, node)
        if kind is nodes.SequenceNode and tag == _SEQ:
            return [self._build(item) for item in node.value]
        if kind is nodes.MappingNode and tag == _MAP:
            built: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if type(key_node) is not nodes.ScalarNode:
                    raise _NotPlain
                key_tag = str(key_node.ctag)
                if key_tag == _STR:
                    key = key_node.value
                elif key_tag == "tag:yaml.org,2002:merge":
                    raise _NotPlain
                else:
                    key = self._build(key_node)
                if key in built:
                    raise _NotPlain  # ruamel reports the duplicate key
                built[key] = self._build(value_node)
            return built
        raise _NotPlain


_loaders = threading.local()


@functools.cache
def _tag(suffix: str) -> yaml_tag.Tag:
    return yaml_tag.Tag(suffix=suffix)


def safe_loader(*, plain: bool = False) -> ruamel_yaml.YAML:
    """ruamel.yaml's safe loader (its C parser when installed), as sync and validate read.

    `plain` adds the direct builder, for YAML without anchors. One of each per thread:
    making one looks for plug-ins on disk, which costs more than reading a small manifest.
    """
    name = "plain" if plain else "yaml"
    loader: ruamel_yaml.YAML | None = getattr(_loaders, name, None)
    if loader is None:
        loader = ruamel_yaml.YAML(typ="safe")
        loader.Resolver = _Resolver
        if plain:
            loader.Constructor = _Constructor
        setattr(_loaders, name, loader)
    return loader


def _document_lines(data: bytes, count: int) -> list[int | None]:
    """The 1-based line each document starts on.

    A document starts at a `---` line, or at the first content line when no document is
    open (at the top of the file, or after a `...` end marker).
    """
    starts: list[int | None] = []
    open_document = False
    for number, line in enumerate(data.split(b"\n"), start=1):
        if _DOC_START.match(line):
            starts.append(number)
            open_document = True
        elif _DOC_END.match(line):
            open_document = False
        elif not open_document and not _NOT_CONTENT.match(line):
            starts.append(number)
            open_document = True
    starts = starts[:count]
    return starts + [None] * (count - len(starts))


def _check_size(doc: Any, *, location: documents.Location, budget: int) -> None:
    """Refuse a document with more than `budget` nodes once aliases are expanded."""
    remaining = budget
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        remaining -= 1
        if remaining < 0:
            raise errors.BundleError(
                f"{location}: document has more than {budget} nodes once aliases are "
                "expanded (limit against alias bombs)"
            )
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, Sequence) and not isinstance(node, str | bytes):
            stack.extend(node)
