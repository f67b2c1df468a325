"""Label and field selectors in the syntax of `labelSelector=` and `fieldSelector=`.

Called by the store when it lists and watches.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence

from reconciler.localcluster import statuses


class Op(enum.StrEnum):
    """A selector requirement's operator."""

    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One comma-separated term: `k=v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this term (as labels.Selector does)."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.op is Op.EXISTS:
            return present
        if self.op is Op.DOES_NOT_EXIST:
            return not present
        if self.op in (Op.EQUALS, Op.IN):
            return present and value in self.values
        return not present or value not in self.values


@dataclasses.dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; empty matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether every requirement holds."""
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


_KEY = r"[A-Za-z0-9./_-]+"
_VALUE = r"[A-Za-z0-9._-]*"
_TERM = re.compile(
    rf"""\s*(?:
        (?P<notkey>!\s*{_KEY})
      | (?P<setkey>{_KEY})\s+(?P<setop>in|notin)\s*\((?P<setvals>[^)]*)\)
      | (?P<cmpkey>{_KEY})\s*(?P<cmpop>==|!=|=)\s*(?P<cmpval>{_VALUE})
      | (?P<key>{_KEY})
    )\s*(?:,|$)""",
    re.VERBOSE,
)


def parse_labels(text: str | None) -> Selector:
    """Parse a label selector; a malformed one is a 400 BadRequest."""
    if not text or not text.strip():
        return Selector()
    requirements: list[Requirement] = []
    pos = 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        if not match or match.end() == pos:
            raise statuses.bad_request(
                f"unable to parse requirement: found '{text[pos:]}', expected: "
                "',', '!=', '==', '=', 'in', 'notin'"
            )
        pos = match.end()
        if match.group("notkey"):
            key = match.group("notkey")[1:].strip()
            requirements.append(Requirement(key=key, op=Op.DOES_NOT_EXIST))
        elif match.group("setkey"):
            values = tuple(v.strip() for v in match.group("setvals").split(",") if v.strip())
            op = Op.IN if match.group("setop") == "in" else Op.NOT_IN
            if not values:
                raise statuses.bad_request(
                    "unable to parse requirement: for 'in', 'notin' operators, "
                    "values set can't be empty"
                )
            requirements.append(Requirement(key=match.group("setkey"), op=op, values=values))
        elif match.group("cmpkey"):
            op = Op.NOT_EQUALS if match.group("cmpop") == "!=" else Op.EQUALS
            requirements.append(
                Requirement(key=match.group("cmpkey"), op=op, values=(match.group("cmpval"),))
            )
        else:
            requirements.append(Requirement(key=match.group("key"), op=Op.EXISTS))
    return Selector(requirements=tuple(requirements))


@dataclasses.dataclass(frozen=True)
class FieldRequirement:
    """`metadata.name=x` or `metadata.namespace!=y`."""

    field: str
    value: str
    negated: bool


@dataclasses.dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field requirements."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether every requirement holds for the object's selectable fields."""
        for r in self.requirements:
            equal = fields.get(r.field, "") == r.value
            if equal == r.negated:
                return False
        return True


def parse_fields(text: str | None, *, supported: Sequence[str]) -> FieldSelector:
    """Parse a field selector; an unknown field is a 400 as on a real server."""
    if not text or not text.strip():
        return FieldSelector()
    requirements: list[FieldRequirement] = []
    for term in text.split(","):
        term = term.strip()
        if not term:
            continue
        operator = next((op for op in ("!=", "==", "=") if op in term), None)
        if operator is None:
            raise statuses.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field, value = term.split(operator, 1)
        negated = operator == "!="
        field = field.strip()
        if field not in supported:
            raise statuses.bad_request(f'field label not supported: {field}')
        requirements.append(FieldRequirement(field=field, value=value.strip(), negated=negated))
    return FieldSelector(requirements=tuple(requirements))
