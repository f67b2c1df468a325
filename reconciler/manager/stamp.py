"""Surgical round-trip YAML edits: stamp an intent id, set a scalar. Called by publish.

Pure bytes -> bytes, no Git and no filesystem. ruamel.yaml's round-trip parser only
*locates* the nodes (every event carries its start and end offset); the edit itself is a
splice into the original text, so every byte outside the stamped lines stays exactly as it
was: comments, key order, quoting, flow style, anchors, document markers, directives,
indentation, blank lines, line endings and trailing whitespace. Each edit is checked by
parsing the result with the safe loader the sites use: the data must equal the original
with only the intended value set, or the file is refused (nothing is half-written).

Layouts where a stamp would reach past its object are refused with the file, line,
document and object: `metadata` or `annotations` given as an alias or anchored and
reused elsewhere, annotations that come from a merge key (`<<:`), an intent-id value
anchored and reused elsewhere, documents that are not mappings or have no metadata.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ruamel import yaml as ruamel_yaml
from ruamel.yaml import error as yaml_error
from ruamel.yaml import events as yaml_events

from reconciler import contract, errors
from reconciler.repo import bundle, documents, guard

_NULLS = ("", "~", "null", "Null", "NULL")
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Anchors and tags before a scalar's text: `&a !!str value`.
_NODE_PROPERTIES = re.compile(r"(?:(?:&[^\s,\[\]{}]+|!<[^>]*>|![^\s,\[\]{}]*)\s+)*")
# Plain scalars that a YAML 1.1 reader (Kubernetes' go-yaml among them) takes for a bool,
# a null, a number or a timestamp, whatever this parser's YAML version says.
_NOT_PLAIN = re.compile(
    r"(?i:y|n|yes|no|on|off|true|false|null|~|[-+]?\.(?:inf|nan))|[-+.]?[0-9].*"
    r"|.*(?::\s|\s#|[,\[\]{}]|:$|^[-?:,\[\]{}#&*!|>'\"%@`]).*"
)


class StampError(errors.ReconcilerError):
    """A file cannot be stamped safely; it names the file, document and object."""


class Action(enum.StrEnum):
    """What a stamp did to one document."""

    REPLACED = "replaced"  # the annotation was there with another value
    ADDED = "added"  # the annotations mapping was there, without the annotation
    CREATED = "created"  # metadata had no annotations (or null): the mapping was added
    UNCHANGED = "unchanged"  # the annotation already carried the id


@dataclasses.dataclass(frozen=True)
class DocumentStamp:
    """One document of a stamped file: where it is, which object, what changed."""

    document: int  # 0-based, counting empty documents too
    line: int  # 1-based line of the document's first node
    object: str  # Kind/namespace/name
    action: Action
    previous: str | None  # the id the document carried before, if any

    @property
    def changed(self) -> bool:
        return self.action is not Action.UNCHANGED


@dataclasses.dataclass(frozen=True)
class StampResult:
    """A stamped file: its new bytes and, per non-empty document, what changed."""

    data: bytes
    documents: tuple[DocumentStamp, ...]

    @property
    def changed(self) -> bool:
        return any(d.changed for d in self.documents)


# --- the node tree, built from ruamel's round-trip events --------------------------------


@dataclasses.dataclass(eq=False)
class _Node:
    """One parsed node with its offsets in the text (ruamel's events, kept as a tree)."""

    kind: str  # scalar, map, seq, alias
    start: int
    end: int
    line: int  # 0-based
    column: int
    anchor: str | None = None
    tag: str | None = None
    style: str | None = None  # scalar quoting: None (plain), ', ", |, >
    flow: bool = False  # a {..} or [..] collection
    value: str = ""  # a scalar's text, or the anchor an alias names
    pairs: list[tuple[_Node, _Node]] = dataclasses.field(default_factory=list)
    items: list[_Node] = dataclasses.field(default_factory=list)
    target: _Node | None = None  # what an alias refers to
    aliased: int = 0  # how many aliases refer to this node

    def get(self, key: str) -> tuple[_Node, _Node] | None:
        """The (key, value) pair of a mapping whose key is the scalar `key`."""
        for pair in self.pairs:
            if pair[0].kind == "scalar" and pair[0].value == key and not _is_merge(pair[0]):
                return pair
        return None

    @property
    def empty(self) -> bool:
        """An empty plain scalar: `key:` with nothing after it."""
        return self.kind == "scalar" and self.start == self.end and not self.value

    @property
    def null(self) -> bool:
        return (self.kind == "scalar" and self.style is None and self.tag is None
                and self.value in _NULLS)


@dataclasses.dataclass(frozen=True)
class _Document:
    index: int
    root: _Node | None
    data: Any  # what the safe loader reads


def _is_merge(key: _Node) -> bool:
    return key.kind == "scalar" and (
        key.tag == _MERGE_TAG or (key.value == "<<" and key.style is None and key.tag is None))


def _parse(text: str, *, file: str) -> list[_Document]:
    """The documents of `text`: node trees with offsets, and the data the sites would read."""
    try:  # bounded before the C parser, which overflows its stack on deep nesting
        guard.check_depth(text.encode(), file=file, max_depth=bundle.Limits().max_depth)
    except errors.BundleError as exc:
        raise StampError(str(exc)) from None
    try:
        data = list(bundle.safe_loader().load_all(text))  # as the sites read it
        roots = _build(ruamel_yaml.YAML(typ="rt").parse(text))
    except yaml_error.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = documents.position(file, mark.line + 1, mark.column + 1) if mark else file
        # from None: the cause would carry ruamel's text, which quotes a duplicate key's
        # values (a Secret's data, say); bundle.yaml_problem() leaves them out.
        raise StampError(f"{where}: invalid YAML: {bundle.yaml_problem(exc)}") from None
    except (yaml_error.YAMLError, RecursionError, TypeError) as exc:
        raise StampError(f"{file}: invalid YAML: {exc}") from exc
    if len(roots) != len(data):  # pragma: no cover - both parsers read the same stream
        raise StampError(f"{file}: the YAML parsers disagree on the number of documents")
    return [_Document(index=i, root=root, data=doc)
            for i, (root, doc) in enumerate(zip(roots, data, strict=True))]


def _build(stream: Iterator[Any]) -> list[_Node | None]:
    roots: list[_Node | None] = []
    roots_before = 0
    anchors: dict[str, _Node] = {}
    stack: list[_Node] = []
    pending_key: list[_Node | None] = []  # per open mapping: a key waiting for its value

    def node_of(event: Any, kind: str) -> _Node:
        mark = event.start_mark
        return _Node(kind=kind, start=mark.index, end=event.end_mark.index, line=mark.line,
                     column=mark.column, anchor=getattr(event, "anchor", None),
                     tag=getattr(event, "tag", None))

    def attach(node: _Node) -> None:
        if not stack:
            roots.append(node)
            return
        parent = stack[-1]
        if parent.kind == "seq":
            parent.items.append(node)
        elif pending_key[-1] is None:
            pending_key[-1] = node
        else:
            parent.pairs.append((pending_key[-1], node))
            pending_key[-1] = None

    for event in stream:
        if isinstance(event, yaml_events.DocumentStartEvent):
            anchors.clear()
            roots_before = len(roots)
        elif isinstance(event, yaml_events.DocumentEndEvent):
            if len(roots) == roots_before:
                roots.append(None)
        elif isinstance(event, yaml_events.ScalarEvent):
            node = node_of(event, "scalar")
            node.value, node.style = event.value, event.style
            attach(node)
            if node.anchor:
                anchors[node.anchor] = node
        elif isinstance(event, yaml_events.AliasEvent):
            node = node_of(event, "alias")
            node.anchor, node.value = None, event.anchor
            node.target = anchors.get(event.anchor)
            if node.target is not None:
                node.target.aliased += 1
            attach(node)
        elif isinstance(event, yaml_events.MappingStartEvent | yaml_events.SequenceStartEvent):
            kind = "map" if isinstance(event, yaml_events.MappingStartEvent) else "seq"
            node = node_of(event, kind)
            node.flow = bool(event.flow_style)
            attach(node)
            if node.anchor:
                anchors[node.anchor] = node
            stack.append(node)
            pending_key.append(None)
        elif isinstance(event, yaml_events.MappingEndEvent | yaml_events.SequenceEndEvent):
            node = stack.pop()
            pending_key.pop()
            if node.flow:
                node.end = event.end_mark.index
    return roots


# --- rendering values --------------------------------------------------------------------


@functools.cache
def _plain_is_safe(value: str) -> bool:
    """Whether `value` may be written unquoted, block or flow, and still read as this string
    by a YAML 1.1 or 1.2 reader."""
    if not value or value != value.strip() or _NOT_PLAIN.fullmatch(value):
        return False
    if any(ord(c) < 32 or c in "\x7f\u2028\u2029\ufeff" for c in value):
        return False
    for version in ("1.1", "1.2"):
        for body in (f"k: {value}\n", f"{{k: {value}}}\n"):
            try:
                loaded = ruamel_yaml.YAML(typ="safe").load(f"%YAML {version}\n---\n{body}")
            except yaml_error.YAMLError:
                return False
            if loaded != {"k": value}:
                return False
    return True


def render(value: str | int, *, style: str | None = None) -> str:
    """`value` as YAML scalar text: an int plain; a string plain when that is safe, else in
    the quotes of `style` (the quoting of the value it replaces), double by default."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"cannot render {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    printable = not any(ord(c) < 32 or c == "\x7f" for c in value)
    if style == "'" and printable:
        return "'" + value.replace("'", "''") + "'"
    if style != '"' and _plain_is_safe(value):
        return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted one


# --- planning one edit -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str
    action: Action
    previous: str | None


class _Refused(Exception):
    """A layout the edit will not touch; the caller adds file, document and object."""

    def __init__(self, message: str, *, node: _Node | None = None) -> None:
        super().__init__(message)
        self.line = node.line + 1 if node is not None else None


def _eol_at(text: str, index: int) -> str:
    """The line ending of the line holding `index` (the file's, for a last line without)."""
    newline = text.find("\n", index)
    if newline == -1:
        return "\r\n" if "\r\n" in text else "\n"
    return "\r\n" if newline > 0 and text[newline - 1] == "\r" else "\n"


def _after_line(text: str, index: int) -> tuple[int, str]:
    """Where a new line goes after the line holding `index`, and the text it must start
    with (a line break, when that line is the file's last and has none)."""
    newline = text.find("\n", index)
    if newline == -1:
        return len(text), _eol_at(text, index)
    return newline + 1, ""


def _last_index(node: _Node, text: str) -> int:
    """The offset just past the last character of `node`'s own text."""
    if node.kind in ("scalar", "alias"):
        if node.empty:
            raise _Refused("an empty value ends the mapping")
        if node.style in ("|", ">"):
            return node.start + len(text[node.start:node.end].rstrip())
        return node.end
    if node.flow:
        return node.end
    if node.kind == "map":
        key, value = node.pairs[-1]
        return _last_index(key if value.empty else value, text)
    return _last_index(node.items[-1], text)


def _shared(node: _Node, what: str) -> None:
    if node.kind == "alias":
        raise _Refused(f"{what} is an alias (*{node.value}) of a node other parts of the "
                       f"document share; stamping it would change them too: write it out "
                       f"in full", node=node)
    if node.aliased:
        raise _Refused(f"{what} is anchored (&{node.anchor}) and used elsewhere through "
                       f"*{node.anchor}; stamping it would change those uses too: write it "
                       f"out in full", node=node)


def _merged_key(mapping: _Node, key: str) -> bool:
    """Whether a merge key (`<<: *x`) of `mapping` brings `key` in."""
    for merge_key, merged in mapping.pairs:
        if not _is_merge(merge_key):
            continue
        sources = merged.items if merged.kind == "seq" else [merged]
        for source in sources:
            target = source.target if source.kind == "alias" else source
            if target is not None and target.kind == "map" and (
                    target.get(key) is not None or _merged_key(target, key)):
                return True
    return False


def _nested(keys: Sequence[str], value: str, *, flow: bool, indent: int, step: int,
            eol: str) -> str:
    """`a: {b: v}` (flow) or indented block lines for the keys `a, b` and the value."""
    if flow:
        text = f"{keys[-1]}: {value}"
        for key in reversed(keys[:-1]):
            text = f"{key}: {{{text}}}"
        return text
    lines = [" " * (indent + i * step) + f"{key}:" for i, key in enumerate(keys[:-1])]
    lines.append(" " * (indent + (len(keys) - 1) * step) + f"{keys[-1]}: {value}")
    return "".join(line + eol for line in lines)


def _plan_set(text: str, *, mapping: _Node, owner: _Node | None, owner_indent: int,
              path: Sequence[str], value: str | int, first: bool, after: str | None,
              names: Sequence[str]) -> _Edit | None:
    """The edit that sets `path` below `mapping` to `value`, or None when it is set already.

    `owner` is the key whose value `mapping` is (None for a document root); a missing key
    goes first (`first`), after the sibling `after`, or last; `names` are the keys walked
    so far, for messages.
    """
    key, rest = path[0], path[1:]
    what = ".".join([*names, key])
    pair = mapping.get(key)
    if pair is not None:
        key_node, node = pair
        if rest:
            _shared(node, what)
            if node.kind == "map":
                return _plan_set(text, mapping=node, owner=key_node,
                                 owner_indent=key_node.column, path=rest, value=value,
                                 first=first, after=after, names=[*names, key])
            if node.null:
                return _replace_null(text, key_node=key_node, node=node, mapping=mapping,
                                     owner_indent=owner_indent, path=rest, value=value)
            raise _Refused(f"{what} is not a mapping", node=node)
        return _replace_scalar(text, key_node=key_node, node=node, value=value, what=what)
    if rest and _merged_key(mapping, key):
        holder = ".".join(names) or "the document"
        raise _Refused(f"{what} comes from a merge key (<<) of {holder}; adding it here "
                       f"would replace the merged one: write {key} out in full", node=mapping)
    return _insert(text, mapping=mapping, owner=owner, owner_indent=owner_indent,
                   keys=path, value=value, first=first, after=after)


def _reads_as(node: _Node, value: str | int) -> bool:
    """Whether the scalar `node` already reads as `value` (a string stays a string)."""
    if node.kind != "scalar" or node.value != str(value):
        return False
    if isinstance(value, int):
        return node.style is None and node.tag is None
    if node.tag == "tag:yaml.org,2002:str" or node.style in ("'", '"'):
        return True
    return node.style is None and node.tag is None and _plain_is_safe(value)


def _replace_scalar(text: str, *, key_node: _Node, node: _Node, value: str | int,
                    what: str) -> _Edit | None:
    if node.kind == "alias":
        # Only this value stops referring to the anchor: every other use keeps its value.
        previous = node.target.value if node.target and node.target.kind == "scalar" else None
        return _Edit(node.start, node.end, render(value), Action.REPLACED, previous)
    if node.kind != "scalar":
        raise _Refused(f"{what} is a {'mapping' if node.kind == 'map' else 'list'}, "
                       f"not a value", node=node)
    if _reads_as(node, value):
        return None
    _shared(node, f"the value of {what}")
    if node.empty:  # `key:` with no value: write after the colon
        colon = text.find(":", key_node.end)
        if colon == -1 or colon > node.start:
            raise _Refused(f"{what} has an empty value with no `:` to write after")
        return _Edit(colon + 1, colon + 1, " " + render(value), Action.REPLACED, None)
    properties = _NODE_PROPERTIES.match(text, node.start, node.end)
    start = node.start + (properties.end() - node.start if properties else 0)
    style = node.style if node.style in ("'", '"') else None
    return _Edit(start, _last_index(node, text), render(value, style=style), Action.REPLACED,
                 node.value)


def _replace_null(text: str, *, key_node: _Node, node: _Node, mapping: _Node,
                  owner_indent: int, path: Sequence[str], value: str | int) -> _Edit:
    """`annotations:` or `annotations: ~` -> the mapping holding `path`."""
    rendered = render(value)
    if node.empty and not mapping.flow:
        position, lead = _after_line(text, key_node.end)
        eol = _eol_at(text, key_node.end)
        step = key_node.column - owner_indent if key_node.column > owner_indent else 2
        body = _nested(path, rendered, flow=False, indent=key_node.column + step, step=step,
                       eol=eol)
        if lead:
            body = lead + body[: -len(eol)]
        return _Edit(position, position, body, Action.CREATED, None)
    flow = "{" + _nested(path, rendered, flow=True, indent=0, step=0, eol="") + "}"
    if node.empty:  # `{annotations: }` or `{annotations}`
        colon = text.find(":", key_node.end)
        if colon != -1 and colon < node.start:
            return _Edit(colon + 1, colon + 1, " " + flow, Action.CREATED, None)
        raise _Refused("the empty value has no `:` to write after")
    return _Edit(node.start, node.end, flow, Action.CREATED, None)


def _insert(text: str, *, mapping: _Node, owner: _Node | None, owner_indent: int,
            keys: Sequence[str], value: str | int, first: bool, after: str | None) -> _Edit:
    rendered = render(value)
    action = Action.ADDED if len(keys) == 1 else Action.CREATED
    if mapping.flow:
        entry = _nested(keys, rendered, flow=True, indent=0, step=0, eol="")
        if not mapping.pairs:
            return _Edit(mapping.start + 1, mapping.start + 1, entry, action, None)
        # A flow mapping gets the new entry last: `{a: b}` -> `{a: b, key: value}`.
        pair = mapping.get(after) if after else None
        key_node, node = pair or mapping.pairs[-1]
        last = _last_index(key_node if node.empty else node, text)
        return _Edit(last, last, ", " + entry, action, None)
    indent = mapping.pairs[0][0].column
    step = indent - owner_indent if owner is not None and indent > owner_indent else 2
    if first and owner is not None and len(keys) == 1:
        position, lead = _after_line(text, owner.end)
        eol = _eol_at(text, owner.end)
    else:
        pair = mapping.get(after) if after else None
        key_node, node = pair or mapping.pairs[-1]
        last = _last_index(key_node if node.empty else node, text)
        position, lead = _after_line(text, last)
        eol = _eol_at(text, last)
    body = _nested(keys, rendered, flow=False, indent=indent, step=step, eol=eol)
    if lead:  # after a last line without a line break: add one before, none after
        body = lead + body[: -len(eol)]
    return _Edit(position, position, body, action, None)


# --- the public operations ---------------------------------------------------------------


def _describe(data: Mapping[str, Any]) -> str:
    meta = data.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    kind, name, namespace = data.get("kind", "?"), meta.get("name", "?"), meta.get("namespace")
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def _where(file: str, document: _Document, line: int | None = None) -> str:
    if line is None:
        line = document.root.line + 1 if document.root is not None else 1
    return f"{documents.position(file, line)} (document {document.index + 1})"


def _decode(data: bytes, *, file: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StampError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _apply(text: str, edits: Sequence[_Edit]) -> str:
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[: edit.start] + edit.text + text[edit.end:]
    return text


def _set_in(data: Any, path: Sequence[str | int], value: Any) -> None:
    for key in path[:-1]:
        if isinstance(key, int):  # an item of a List
            data = data[key]
            continue
        if data.get(key) is None:
            data[key] = {}
        data = data[key]
    data[path[-1]] = value


def _verify(*, file: str, before: Sequence[_Document], after_text: str,
            changes: Mapping[int, Sequence[tuple[Sequence[str | int], Any]]],
            describe: Mapping[int, str], what: str) -> None:
    """The edited text must read as the original data with only `changes` made."""
    try:
        after = list(bundle.safe_loader().load_all(after_text))
    except (yaml_error.YAMLError, TypeError) as exc:
        raise StampError(f"{file}: the edit would make the file unreadable ({exc}); the "
                         f"layout is unusual: stamp this file by hand") from exc
    if len(after) != len(before):
        raise StampError(f"{file}: the edit would change the number of documents; the "
                         f"layout is unusual: stamp this file by hand")
    for document, data in zip(before, after, strict=True):
        expected = copy.deepcopy(document.data)
        for path, value in changes.get(document.index, ()):
            _set_in(expected, path, value)
        if data != expected:
            obj = f" {describe[document.index]}" if document.index in describe else ""
            raise StampError(
                f"{_where(file, document)}{obj}: setting {what} here would change more than "
                f"that value; the layout is unusual: edit this file by hand")


def stamp_file(data: bytes, *, file: str, intent_id: str) -> StampResult:
    """Set `metadata.annotations["reconciler.dev/intent-id"]` to `intent_id` in every
    non-empty document of one manifest file, changing no other byte.

    `file` only names the file in messages. Raises StampError for a document that is not
    a mapping, has no metadata, or shares its metadata or annotations with other nodes.
    """
    if not contract.INTENT_ID_PATTERN.match(intent_id):
        raise StampError(f"invalid intent id {intent_id!r}: use [A-Za-z0-9._-]{{1,63}}")
    bom = "\ufeff" if data.startswith(b"\xef\xbb\xbf") else ""
    text = _decode(data, file=file)[len(bom):]
    documents = _parse(text, file=file)
    path = ("metadata", "annotations", contract.ANNOTATION_INTENT_ID)
    edits: list[_Edit] = []
    stamps: list[DocumentStamp] = []
    describe: dict[int, str] = {}
    changes: dict[int, list[tuple[Sequence[str | int], Any]]] = {}
    for document in documents:
        if document.data is None:
            continue  # an empty document: nothing to stamp
        where = _where(file, document)
        if not isinstance(document.data, Mapping) or document.root is None \
                or document.root.kind != "map":
            raise StampError(f"{where}: a manifest must be a mapping (an object), not "
                             f"{type(document.data).__name__}")
        describe[document.index] = _describe(document.data)
        for prefix, body, node in _objects(document, file=file):
            obj = _describe(body)
            if not isinstance(body.get("metadata"), Mapping):
                raise StampError(f"{_where(file, document, node.line + 1)} {obj}: has no "
                                 "metadata mapping; every manifest needs metadata.name (and "
                                 "gets metadata.annotations)")
            annotations = body["metadata"].get("annotations")
            previous = annotations.get(path[-1]) if isinstance(annotations, Mapping) else None
            try:
                _shared(node, "the document" if not prefix else "the item")
                metadata = node.get("metadata")
                if metadata is None:
                    raise _Refused("metadata comes from a merge key (<<): write it out in full")
                _shared(metadata[1], "metadata")
                edit = _plan_set(text, mapping=node, owner=None, owner_indent=node.column,
                                 path=path, value=intent_id, first=True, after=None, names=[])
            except _Refused as exc:
                raise StampError(f"{_where(file, document, exc.line)} {obj}: {exc}") from exc
            if edit is None:
                stamps.append(DocumentStamp(document.index, node.line + 1, obj,
                                            Action.UNCHANGED, intent_id))
                continue
            edits.append(edit)
            changes.setdefault(document.index, []).append(((*prefix, *path), intent_id))
            stamps.append(DocumentStamp(
                document.index, node.line + 1, obj, edit.action,
                None if previous is None else str(previous)))
    if not edits:
        return StampResult(data=data, documents=tuple(stamps))
    new_text = _apply(text, edits)
    _verify(file=file, before=documents, after_text=new_text, changes=changes,
            describe=describe, what=".".join(path))
    return StampResult(data=(bom + new_text).encode("utf-8"), documents=tuple(stamps))


def _objects(document: _Document, *,
             file: str) -> list[tuple[tuple[int | str, ...], Mapping[str, Any], _Node]]:
    """The objects one document holds, as sync reads them (bundle.list_items): the
    document itself, or each item of a `kind: List`, with the path to it, its data and its
    node. A List inside a List is refused: stamp such a file by hand."""
    assert document.root is not None
    if not bundle.is_list(document.data):
        return [((), document.data, document.root)]
    pair = document.root.get("items")
    items = document.data["items"] or []
    if pair is None or pair[1].kind != "seq" or len(pair[1].items) != len(items):
        raise StampError(f"{_where(file, document)} {_describe(document.data)}: its items "
                         "come from an alias or a merge key: stamp this file by hand")
    found: list[tuple[tuple[int | str, ...], Mapping[str, Any], _Node]] = []
    for index, (item, node) in enumerate(zip(items, pair[1].items, strict=True)):
        where = _where(file, document, node.line + 1)
        if not isinstance(item, Mapping) or node.kind != "map":
            raise StampError(f"{where}: item {index} of the List must be a mapping (an "
                             f"object), not {type(item).__name__}")
        if bundle.is_list(item):
            raise StampError(f"{where}: item {index} is a List inside a List: stamp this "
                             "file by hand")
        found.append((("items", index), item, node))
    return found


def set_values(data: bytes, *, file: str,
               values: Sequence[tuple[tuple[str, ...], str | int]]) -> bytes:
    """Set each `(path, value)` in the one YAML document of `data` (e.g. intent.yaml's
    `spec.id`), changing no other byte. A missing key goes after the one set before it,
    or last in its mapping. Raises StampError when that cannot be done exactly."""
    bom = "\ufeff" if data.startswith(b"\xef\xbb\xbf") else ""
    text = _decode(data, file=file)[len(bom):]
    original = _parse(text, file=file)
    content = [d for d in original if d.data is not None]
    if len(content) != 1 or not isinstance(content[0].data, Mapping):
        raise StampError(f"{file}: expected exactly one YAML document holding a mapping")
    index = content[0].index
    for number, (path, value) in enumerate(values):
        document = _parse(text, file=file)[index]
        assert document.root is not None
        previous = values[number - 1][0] if number else None
        after = previous[-1] if previous and previous[:-1] == path[:-1] else None
        try:
            _shared(document.root, "the document")
            edit = _plan_set(text, mapping=document.root, owner=None, owner_indent=0,
                             path=path, value=value, first=False, after=after, names=[])
        except _Refused as exc:
            raise StampError(f"{_where(file, document, exc.line)}: {exc}") from exc
        if edit is not None:
            text = _apply(text, [edit])
    _verify(file=file, before=original, after_text=text,
            changes={index: [(path, value) for path, value in values]}, describe={},
            what=", ".join(".".join(path) for path, _ in values))
    return (bom + text).encode("utf-8")
