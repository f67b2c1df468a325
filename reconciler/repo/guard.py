"""What a YAML file may be and hold, checked around the parser. Called by bundle.parse_documents().

Before the parser: the file is UTF-8 (`check_encoding()`, rule `encoding`), and its depth
is bounded (`check_depth()`, rule `max-depth`). After it: every document holds only what
JSON can carry to the API server (`check_values()`, rule `json-values`).

ruamel's C composer builds a document by recursion in C: about 29,000 levels (58 KB of
`[`) overflow the thread's stack and kill the process, with no Python exception to catch.
So every file's depth is bounded first, from its bytes:

* `fits()` proves cheaply, with a few searches that run in C, that a file cannot nest
  deeper than the limit: a flow collection needs a `[` or `{` (two levels with an implicit
  `[a: b]` mapping), and a block level needs indentation or a compact entry (`- `, `? `,
  `: `) on its line. Quotes are not trusted: `[ "]", [ "]", ...` still counts every `[`.
* `exact()` counts the depth from the events of libyaml's parser, a state machine with
  its own stacks that cannot overflow, and stops at the first level over the limit. It
  costs a fifth of a load, and runs only for a file `fits()` cannot vouch for: deep
  indentation (cert-manager's CRDs) or many brackets.

Raises NestingError naming the file, the line and the limit (rule `max-depth`).
"""

from __future__ import annotations

import math
import re
from typing import Any

from ruamel import yaml as ruamel_yaml
from ruamel.yaml import error as yaml_error
from ruamel.yaml import events

from reconciler import errors
from reconciler.repo import documents

RULE = "max-depth"
# A line's compact block entries (`- - x`, `? - x`, `: - x`), each after any properties.
_ENTRY = rb"(?:[&!][^ \t\r\n]*[ \t]+)*[-?:][ \t]+"


ENCODING_RULE = "encoding"
VALUES_RULE = "json-values"
INT64 = range(-(2**63), 2**63)
_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"),
         (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"))


def check_encoding(data: bytes, *, file: str) -> None:
    """Refuse a file that is not UTF-8 (a UTF-8 byte order mark is allowed), naming the
    first bad byte's line. Raises YAMLSyntaxError; the bytes are never quoted."""
    problem, line = None, None
    for bom, name in _BOMS:
        if data.startswith(bom):
            problem = f"the file is {name}; manifests must be UTF-8 (rule: {ENCODING_RULE})"
            break
    else:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            problem = f"byte {exc.start} is not UTF-8; manifests must be UTF-8 " \
                      f"(rule: {ENCODING_RULE})"
    if problem is not None:
        raise errors.YAMLSyntaxError(
            f"{documents.position(file, line)}: invalid YAML: {problem}", file=file,
            line=line, problem=problem)


def check_values(doc: Any, *, location: documents.Location) -> None:
    """Refuse a document holding what JSON cannot carry to the API server: bytes
    (`!!binary`), sets, timestamps, ordered maps, complex keys, integers outside int64,
    NaN or infinity. Names the JSON path, never the value. Raises BundleError."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
    while stack:
        node, keys = stack.pop()
        kind = type(node)
        problem = None
        if kind is dict:
            for key, value in node.items():
                if type(key) not in (str, int, bool, float, type(None)):
                    problem = f"a mapping key of type {type(key).__name__}"
                    break
                stack.append((value, (*keys, str(key))))
        elif kind is list:
            stack.extend((item, (*keys, index)) for index, item in enumerate(node))
        elif kind is int:
            if node not in INT64:
                problem = "an integer outside the 64-bit range"
        elif kind is float:
            if not math.isfinite(node):
                problem = "a number that is not finite (.nan or .inf)"
        elif kind not in (str, bool, type(None)):
            problem = f"a value of type {kind.__name__} (from a YAML tag)"
        if problem is not None:
            path = "$" + "".join(f"[{key}]" if isinstance(key, int) else f".{key}"
                                 for key in keys)
            raise errors.BundleError(
                f"{location}: {documents.printable(path)} holds {problem}, which JSON cannot "
                f"carry to the API server (rule: {VALUES_RULE})")


class NestingError(errors.BundleError):
    """A file nests deeper than the limit; `line` is where the limit was passed, if known."""

    def __init__(self, message: str, *, file: str, line: int | None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


def fits(data: bytes, *, max_depth: int) -> bool:
    """Whether `data` provably nests at most `max_depth` levels: at most two levels per
    `[` or `{`, two per indentation column in use, and two per compact entry of a line,
    plus one (a mapping opened on the deepest line)."""
    if len(data) <= max_depth:
        return True  # every level takes at least one byte
    opens = data.count(b"[") + data.count(b"{")
    share = (max_depth - 1 - 2 * opens) // 4  # for indentation, and for compact entries
    if share <= 0:
        return False
    indented = re.search(rb"^ {%d}" % share, data, re.MULTILINE)
    compact = re.search(rb"^ *(?:%s){%d}" % (_ENTRY, share), data, re.MULTILINE)
    return indented is None and compact is None


def check_depth(data: bytes, *, file: str, max_depth: int) -> None:
    """Refuse `data` when a document nests deeper than `max_depth` levels, before anything
    recursive reads it. Raises NestingError; a YAML error is left to the real parser."""
    if not fits(data, max_depth=max_depth):
        exact(data, file=file, max_depth=max_depth)


def exact(data: bytes, *, file: str, max_depth: int) -> None:
    """Count the depth from libyaml's parser events (ruamel's pure-Python parser when the
    C one is not installed: neither recurses), stopping at the first level over
    `max_depth`. Raises NestingError; malformed YAML ends the count quietly (the parser
    that reads the file next reports it, with its line)."""
    depth = 0
    try:
        for event in ruamel_yaml.YAML(typ="safe").parse(data):
            if isinstance(event, events.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    mark = event.start_mark
                    line = mark.line + 1 if mark is not None else None
                    raise NestingError(
                        f"{documents.position(file, line)}: YAML nests deeper than "
                        f"{max_depth} levels (rule: {RULE}; limit against stack exhaustion)",
                        file=file, line=line)
            elif isinstance(event, events.CollectionEndEvent):
                depth -= 1
    except (yaml_error.YAMLError, UnicodeDecodeError, RecursionError):
        return
