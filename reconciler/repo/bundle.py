"""Read one site's intent and manifests at a revision, safely. Called by reconcile.sync_once().

YAML is parsed with ruamel.yaml's safe loader, its plain scalars typed as kubectl types
them (`_kubectl_table`), and a `kind: List` is read as its items (`list_items`), as kubectl
reads one. Limits bound what a hostile or broken commit can cost: file size, bytes per site,
files per folder, documents per file, and nodes per document (which also stops alias
"billion laughs" expansion). Every error names the file, the line where YAML gives one,
and the rule that was broken; a limit's, the flag that raises it.
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
from reconciler.repo import documents, guard, schemas
from reconciler.repo import tree as trees

_DOC_START = re.compile(rb"^---(?:[ \t]|\r?$)")
_DOC_END = re.compile(rb"^\.\.\.(?:[ \t]|\r?$)")
_NOT_CONTENT = re.compile(rb"^(?:[ \t]*(?:#.*)?\r?$|%)")  # blank, comment, or directive
_DOC_START_LINES = re.compile(rb"^---(?:[ \t]|\r?$)", re.MULTILINE)

DEFAULT_HEALTH_TIMEOUT = 600.0
# `rollout.prune: allowEmpty`: prune on, and an empty or much smaller desired set allowed.
ALLOW_EMPTY = "allowEmpty"


MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Limits:
    """How much one revision of one site may hold.

    The byte limits are flags (`--max-file-size`, `--max-site-size`) of every command that
    reads a site. A file's default fits Argo CD's install.yaml (1.9 MB, its ApplicationSet
    CRD alone 1.4 MB) four times over; a site's counts its intent, its manifests and crds/.
    """

    max_file_bytes: int = 8 * MiB
    max_site_bytes: int = 64 * MiB
    max_files: int = 5000
    max_documents: int = 1000  # per file
    max_nodes: int = 100_000  # per document, counted with aliases expanded
    max_depth: int = 200  # nesting levels per document, checked before parsing (guard)


FILE_SIZE_FLAG = "--max-file-size"
SITE_SIZE_FLAG = "--max-site-size"
_SIZE = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_SIZE_UNITS = {None: 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
               "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def parse_size(text: str) -> int:
    """Bytes of a size written as Kubernetes writes a quantity: `8Mi`, `512Ki`, `1G`, or a
    plain number of bytes. Raises ValueError naming the text."""
    match = _SIZE.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid size {text!r}: use a positive number of bytes, or one with "
                         "a unit as Kubernetes writes them (512Ki, 8Mi, 1Gi, 1G)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def format_size(size: int) -> str:
    """`size` bytes as the largest binary unit that divides it: 8388608 -> `8Mi`."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)


class SiteBudget:
    """The bytes one site's reads may still take (Limits.max_site_bytes): counts every file
    read through `read`, and refuses the file that goes over, naming the site."""

    def __init__(self, *, site: str, limits: Limits) -> None:
        self.site = site
        self.limits = limits
        self.used = 0

    def read(self, tree: trees.Tree, path: PurePosixPath) -> bytes:
        data = read_file(tree, path, limits=self.limits)
        self.used += len(data)
        if self.used > self.limits.max_site_bytes:
            raise errors.BundleError(
                f"site {self.site}: its files hold {self.used} bytes or more (at {path}), "
                f"over the limit of {describe_size(self.limits.max_site_bytes)} per site; "
                f"raise it with {SITE_SIZE_FLAG}")
        return data


def read_file(tree: trees.Tree, path: PurePosixPath, *, limits: Limits) -> bytes:
    """`path`'s bytes, refusing a file over Limits.max_file_bytes with the flag to raise it."""
    try:
        return tree.read(path, max_bytes=limits.max_file_bytes)
    except errors.BundleError as exc:
        # The tree names the file, its size and the limit; only the flag is added here. Its
        # other errors (not a file, a symlink) say nothing of a limit, and pass unchanged.
        if f"over the limit of {limits.max_file_bytes} bytes" not in str(exc):
            raise
        raise errors.BundleError(
            f"{exc}{_unit(limits.max_file_bytes)}; raise it with {FILE_SIZE_FLAG}") from exc


def _unit(size: int) -> str:
    """` (8Mi)` after a size in bytes, when a unit says it shorter; else ''."""
    short = format_size(size)
    return f" ({short})" if short != str(size) else ""


def describe_size(size: int) -> str:
    """`8388608 bytes (8Mi)`, or `8000 bytes`: how a message states a limit."""
    return f"{size} bytes{_unit(size)}"


def load(*, tree: trees.Tree, site: str, limits: Limits = Limits()) -> documents.Bundle:
    """Read `sites/<site>/intent.yaml`, its manifests and `crds/` from `tree`.

    Raises BundleError (unreadable, missing, unsafe) or ValidationError (the intent
    breaks its schema). Manifests are checked later, by schemas.check_manifests().
    """
    check_site_name(site)
    if not tree.is_dir(contract.site_dir(site)):
        raise missing_site(tree, site, where="the repository")
    budget = SiteBudget(site=site, limits=limits)
    intent = _load_intent(tree=tree, site=site, budget=budget)
    folder = contract.manifests_dir(site)
    manifests = _load_folder(tree=tree, folder=folder, budget=budget) \
        if tree.is_dir(folder) else ()
    crds = _load_folder(tree=tree, folder=contract.CRDS_DIR, budget=budget)
    # A manifests/ deleted, or replaced by a file or a submodule, is said here; the
    # pipeline refuses to read it as "desire nothing, prune everything" (prune guard).
    missing = "" if tree.is_dir(folder) else \
        ("is not a folder" if tree.exists(folder) else "is missing")
    return documents.Bundle(site=site, intent=intent, manifests=manifests, crds=crds,
                            manifests_missing=missing)


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


def _load_intent(*, tree: trees.Tree, site: str, budget: SiteBudget) -> documents.Intent:
    path = contract.intent_path(site)
    if not tree.exists(path):
        raise errors.BundleError(
            f"{path}: missing; every site needs an intent file (kind {contract.INTENT_KIND})"
        )
    docs = parse_documents(budget.read(tree, path), file=str(path), limits=budget.limits)
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
        prune=rollout.get("prune", True) is not False,
        location=location,
        allow_empty=rollout.get("prune") == ALLOW_EMPTY,
    )


def _load_folder(
    *, tree: trees.Tree, folder: PurePosixPath, budget: SiteBudget
) -> tuple[documents.Manifest, ...]:
    limits = budget.limits
    files = [p for p in tree.files(folder) if p.suffix in contract.MANIFEST_SUFFIXES]
    if len(files) > limits.max_files:
        raise errors.BundleError(
            f"{folder}/: {len(files)} files, over the limit of {limits.max_files}"
        )
    manifests: list[documents.Manifest] = []
    for path in files:
        data = budget.read(tree, path)
        for location, doc in parse_documents(data, file=str(path), limits=limits):
            manifests.extend(list_items(doc, location=location))
    return tuple(manifests)


def is_list(doc: Any) -> bool:
    """A `kind: List` (or `<Kind>List`) document with `items`, as kubectl reads one: its
    items are the objects, not the List (cli-runtime's FlattenListVisitor)."""
    return (isinstance(doc, Mapping) and isinstance(doc.get("kind"), str)
            and doc["kind"].endswith("List") and "items" in doc)


class ShapeError(errors.BundleError):
    """A document, or a List's item, that is no object: `location` says which, `problem`
    what is wrong (validate reports it as a finding)."""

    def __init__(self, problem: str, *, location: documents.Location) -> None:
        super().__init__(f"{location}: {problem}")
        self.location = location
        self.problem = problem


def list_items(doc: Any, *, location: documents.Location,
               problems: list[ShapeError] | None = None) -> list[documents.Manifest]:
    """The manifests one document holds: itself, or each object of a List, each located by
    its index in `items`. Nested Lists are flattened, as kubectl flattens them.

    Raises ShapeError for a document or List item that is not a mapping with apiVersion and
    kind, naming the file, the document and the item; with `problems` (validate's way), a
    broken item is added there instead and the other items are still returned.
    """
    if not isinstance(doc, Mapping):
        raise ShapeError(f"a manifest must be a mapping (an object), not {type(doc).__name__}",
                         location=location)
    if not is_list(doc):
        return [documents.Manifest(location=location, body=doc)]
    items = doc["items"]
    if items is None:
        return []
    if not isinstance(items, list):
        raise ShapeError(f"{doc['kind']}'s items must be a list of objects, not "
                         f"{type(items).__name__}", location=location)
    found: list[documents.Manifest] = []
    for index, item in enumerate(items):
        where = location.item(index)
        problem = None
        if not isinstance(item, Mapping):
            problem = ShapeError(f"an item of a {doc['kind']} must be a mapping (an object), "
                                 f"not {type(item).__name__}", location=where)
        elif missing := [key for key in ("apiVersion", "kind") if not item.get(key)]:
            problem = ShapeError(f"an item of a {doc['kind']} needs {' and '.join(missing)}, "
                                 "as every object does", location=where)
        if problem is None:
            found.extend(list_items(item, location=where, problems=problems))
        elif problems is None:
            raise problem
        else:
            problems.append(problem)
    return found


def parse_documents(
    data: bytes, *, file: str, limits: Limits = Limits()
) -> list[tuple[documents.Location, Any]]:
    """Every non-empty YAML document in `data`, with where it starts.

    Depth and the document count are bounded from the bytes before any parser runs: the
    C parser overflows its stack on deep nesting (guard.check_depth())."""
    guard.check_encoding(data, file=file)
    guard.check_depth(data, file=file, max_depth=limits.max_depth)
    if len(_DOC_START_LINES.findall(data)) > limits.max_documents:
        raise errors.BundleError(
            f"{file}: more than {limits.max_documents} documents, over the limit of "
            f"{limits.max_documents}")
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
    except (ValueError, KeyError, OverflowError):
        # A tagged scalar its type cannot hold (`!!bool "maybe"`, `!!timestamp 2024-13-45`,
        # `!!float abc`), or an integer of more than 4300 digits. from None: the cause
        # quotes the value, which may be a Secret's.
        problem = ("a value its type cannot hold (a malformed !!bool, !!int, !!float or "
                   "!!timestamp, or an integer of more than 4300 digits) (rule: yaml-value)")
        raise errors.YAMLSyntaxError(f"{file}: invalid YAML: {problem}", file=file,
                                     problem=problem) from None
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
        guard.check_values(doc, location=location)
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


# Plain scalars are read as kubectl reads them. kubectl turns YAML into JSON with
# sigs.k8s.io/yaml, which decodes with go-yaml v2 (YAML 1.1 rules) into interface{}:
# * `y`, `yes`, `on`, `n`, `no`, `off` (any of their three spellings) are booleans;
# * `0755` is octal (Go's strconv base 0): 493, as a Pod's `defaultMode: 0644` means;
# * `2024-01-02` stays a string (go-yaml v2 keeps timestamps as text in interface{});
# * `=` is a string: go-yaml has no YAML 1.1 "value" type (AlertmanagerConfig's CRD has a
#   plain `- =`), nor does it give `!`, `&` or `*` alone a type;
# * `1:20` is a string (no sexagesimal numbers), as YAML 1.2 has it.
# Everything else (null, `0x1F`, `0o17`, floats, `.inf`, `<<`) is where YAML 1.2 and go-yaml agree.
_KUBECTL_DROPPED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:value",
                    "tag:yaml.org,2002:yaml", "tag:yaml.org,2002:timestamp"}
_BOOL = "tag:yaml.org,2002:bool"


def _kubectl_table() -> dict[Any, tuple[tuple[str, Any], ...]]:
    """The implicit-tag rules by first character: ruamel's YAML 1.2 rules, with YAML 1.1's
    booleans and without the types go-yaml does not have (see above)."""
    table: dict[Any, list[tuple[str, Any]]] = {}
    for versions, tag, regexp, first in resolver.implicit_resolvers:
        wanted = (1, 1) in versions if tag == _BOOL else (
            (1, 2) in versions and tag not in _KUBECTL_DROPPED)
        if wanted:
            for char in first:
                table.setdefault(char, []).append((tag, regexp))
    anywhere = tuple(table.pop(None, ()))  # rules for any first character (none today)
    return {char: (*rules, *anywhere) for char, rules in table.items()} | {None: anywhere}


_KUBECTL_TABLE = _kubectl_table()


class _Resolver(resolver.VersionedResolver):
    """Plain scalars typed as kubectl types them (`_kubectl_table`), whatever `%YAML` says.

    The stock resolver also finds its table again for every scalar, about a third of the
    load time of a manifest; this one reads the one table, built once.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is nodes.ScalarNode and implicit[0] and not self.yaml_path_resolvers:
            rules = _KUBECTL_TABLE.get(value[0] if value else "", _KUBECTL_TABLE[None])
            for tag, regexp in rules:
                if regexp.match(value):
                    return _tag(tag)
            return self.DEFAULT_SCALAR_TAG
        return super().resolve(kind, value, implicit)


_STR, _SEQ, _MAP = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:seq",
                    "tag:yaml.org,2002:map")


class _NotPlain(Exception):
    """A document the plain builder leaves to ruamel's own constructor."""


class _SafeConstructor(constructor.SafeConstructor):
    """ruamel's safe constructor, with integers as kubectl reads them: `0755` is octal."""

    def construct_yaml_int(self, node: Any) -> int:
        digits = str(node.value).replace("_", "")
        unsigned = digits.lstrip("+-")
        if len(unsigned) > 1 and unsigned[0] == "0" and unsigned.isdigit() \
                and set(unsigned) <= set("01234567"):
            return (-1 if digits[0] == "-" else 1) * int(unsigned, 8)
        return super().construct_yaml_int(node)


_SafeConstructor.add_constructor("tag:yaml.org,2002:int", _SafeConstructor.construct_yaml_int)


class _Constructor(_SafeConstructor):
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
        loader.Constructor = _Constructor if plain else _SafeConstructor
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
