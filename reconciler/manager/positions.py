"""Find the line and column of a field in a YAML file. Called by lint for its findings.

The fast safe loader keeps no positions, so a file with findings is read once more with
ruamel.yaml's round-trip loader, which does, and each finding's JSON path is walked down
to the deepest node that exists: the field itself, or the mapping a required field is
missing from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ruamel import yaml as ruamel_yaml
from ruamel.yaml import comments

from reconciler.repo import schemas


def locate(documents: Sequence[Any], *, document: int,
           keys: Sequence[str | int]) -> tuple[int, int] | None:
    """1-based (line, column) of the deepest node of `keys` in the round-trip `documents`."""
    if not 0 <= document < len(documents):
        return None
    node = documents[document]
    where: tuple[int, int] | None = None
    for key in keys:
        if isinstance(node, comments.CommentedMap) and key in node:
            line, column = node.lc.key(key)
        elif isinstance(node, comments.CommentedSeq) and isinstance(key, int) \
                and 0 <= key < len(node):
            line, column = node.lc.item(key)
        else:
            break
        where = (line + 1, column + 1)
        node = node[key]
    if where is None and isinstance(node, comments.CommentedBase):
        where = (node.lc.line + 1, node.lc.col + 1)
    return where


def place(findings: Sequence[schemas.Finding], *,
          data: bytes) -> list[schemas.Finding]:
    """`findings` (all of one file) with the line and column of their fields filled in."""
    if not findings:
        return []
    try:
        documents = list(ruamel_yaml.YAML(typ="rt").load_all(data))
    except Exception:  # the safe loader read it; a line number is only a nicety
        return list(findings)
    placed = []
    for finding in findings:
        where = locate(documents, document=finding.location.document, keys=finding.keys)
        if where is not None and finding.line is None:
            finding = dataclasses.replace(finding, line=where[0], column=where[1])
        placed.append(finding)
    return placed
