"""The project's exceptions. Every stage raises these; the CLI maps them to exit codes.

Each error says whether a retry can help (`retryable`): a network blip can heal, a bad
manifest cannot until someone commits a fix.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Mapping
from typing import Any

# Characters shown escaped: C0 and C1 controls and DEL (newlines forge log lines, ESC
# starts terminal sequences), line and paragraph separators, and bidirectional overrides.
_UNSAFE = frozenset({"\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)),
                     *map(chr, range(0x2066, 0x206A))})


def printable(text: str) -> str:
    """`text` with every control character escaped as Python writes it (`\\n`, `\\x1b`):
    repository text as a log line or a terminal may show it, one line, inert. A
    BundleError's message passes through it: a name or a path in a commit cannot forge a
    log line or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(repr(char)[1:-1] if _unsafe(char) else char for char in text)


def _unsafe(char: str) -> bool:
    return char in _UNSAFE or unicodedata.category(char) == "Cc"


class ReconcilerError(Exception):
    """Base of every error the reconciler reports to a user."""

    retryable: bool = False


class UsageError(ReconcilerError):
    """The command was called wrongly (exit code 2)."""


class SourceError(ReconcilerError):
    """Fetching the repository failed (network, auth, missing branch)."""

    retryable = True


class HistoryRewriteError(SourceError):
    """The new head does not descend from the last fetched one."""

    retryable = False


class SignatureError(SourceError):
    """The fetched head is unsigned, signed by an untrusted key, or its signature does not
    verify (--verify-signatures): refused until a commit signed by a trusted key lands."""

    retryable = False


class BundleError(ReconcilerError):
    """The site's files at a revision cannot be read: missing, unsafe, or not YAML."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))  # it quotes repository paths and names


class YAMLSyntaxError(BundleError):
    """A file is not valid YAML; `line` and `column` are 1-based where YAML gives them."""

    def __init__(self, message: str, *, file: str, line: int | None = None,
                 column: int | None = None, problem: str = "") -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.column = column
        self.problem = printable(problem or message)


class ValidationError(ReconcilerError):
    """Documents read fine but break a schema or a protocol rule."""

    def __init__(self, message: str, *, findings: list[str] | None = None) -> None:
        super().__init__(printable(message))  # findings quote names from the repository
        self.findings = [printable(finding) for finding in findings or [message]]


class StateError(ReconcilerError):
    """The state file is unreadable, corrupt, or of an unknown format."""


class StateLockedError(StateError):
    """Another reconciler holds the site's state lock."""


class StateConflictError(StateError):
    """The stored state changed since this reconciler read it: another writer saved it.

    Never overwritten: the pass fails, and the state is read again before the next one.
    """

    retryable = True


class StateLostError(StateError):
    """The store holds no state for a site the cluster shows was reconciled before.

    Adopting the repository's head silently would forget the history guard and the
    superseded intent ids; `--adopt` says a person checked and wants exactly that.
    """


class NotLeaderError(StateError):
    """This replica does not hold the site's Lease (any more): it must not write."""

    retryable = True


@dataclasses.dataclass(frozen=True)
class Cause:
    """One entry of a Kubernetes Status's `details.causes`: what went wrong, and where.

    `type` is the cause's `reason` in the JSON (Go's StatusCause.Type), e.g.
    `FieldManagerConflict` or `FieldValueRequired`; `field` is its path, e.g. `.data.k`.
    """

    type: str | None
    field: str | None
    message: str


IMMUTABLE_SUFFIX = "field is immutable"  # how the API server's validation says it


def immutable_fields(causes: tuple[Cause, ...]) -> tuple[str, ...]:
    """The fields an update may not change that a refusal names: its FieldValueInvalid
    causes whose message ends with the API server's `field is immutable` (a Job's
    `spec.template`, a Deployment's `spec.selector`), each once, in the server's order."""
    found: dict[str, None] = {}
    for cause in causes:
        if (cause.type == "FieldValueInvalid" and cause.field
                and cause.message.rstrip().endswith(IMMUTABLE_SUFFIX)):
            found[cause.field] = None
    return tuple(found)


class ClusterError(ReconcilerError):
    """The cluster refused or failed a request.

    `reason`, `details` and `causes` keep the API server's Status payload when it sent
    one: `reason` its machine-readable reason (`Conflict`, `Invalid`, `NotFound`, ...),
    `details` the Status's `details` as sent, `causes` its `details.causes`.
    `retry_after`: the seconds the server asked a client to wait before the next try (the
    `Retry-After` header of a 429 or 503), None when it asked nothing.
    """

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None,
                 reason: str | None = None, details: Mapping[str, Any] | None = None,
                 causes: tuple[Cause, ...] = (), retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.reason = reason
        self.details = details
        self.causes = causes


class ApplyError(ClusterError):
    """A server-side apply of one object failed."""


class ConflictError(ApplyError):
    """Server-side apply found fields owned by another manager.

    `managers` names the field managers the conflict is with, each once, in the order
    the server listed them.
    """

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None,
                 reason: str | None = None, details: Mapping[str, Any] | None = None,
                 causes: tuple[Cause, ...] = (), managers: tuple[str, ...] = ()) -> None:
        super().__init__(message, retryable=retryable, status=status, reason=reason,
                         details=details, causes=causes)
        self.managers = managers


class VersionConflictError(ClusterError):
    """A create or update met another writer (409): the object already exists, or it
    changed since it was read (a stale `metadata.resourceVersion`). Read it again."""


class NotFoundError(ClusterError):
    """The object or its kind does not exist on the cluster."""


class ForbiddenError(ClusterError):
    """The API server refused a request for want of permission (403): the reconciler's
    account may not `verbs` the `resource` of API `group`.

    `verbs` are what the request needed as RBAC spells them (a server-side apply needs
    `patch`, and `create` for an object that does not exist yet), `group` and `resource`
    (the plural) come from the Status's details; `role` names the role deploy/ installs
    that should grant them. Not retryable: it heals only when someone widens the role.
    """

    def __init__(self, message: str, *, verbs: tuple[str, ...], group: str | None,
                 resource: str | None, name: str | None = None, role: str = "",
                 status: int | None = 403, reason: str | None = None,
                 details: Mapping[str, Any] | None = None,
                 causes: tuple[Cause, ...] = ()) -> None:
        super().__init__(message, retryable=False, status=status, reason=reason,
                         details=details, causes=causes)
        self.verbs = verbs
        self.group = group
        self.resource = resource
        self.name = name
        self.role = role


class GroupUnavailableError(ClusterError):
    """The cluster lists an API group version but cannot serve it now: an aggregated API
    (an APIService, e.g. metrics.k8s.io) whose backend is down answers 503 for it.

    `group_version` names it and `why` is the server's reason. Not a NotFoundError: the
    kind may well exist and hold objects, nobody can see them. A retry can help once the
    backend is back.
    """

    def __init__(self, message: str, *, group_version: str, why: str,
                 retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)
        self.group_version = group_version
        self.why = why


class AbortedError(ReconcilerError):
    """The rollout was stopped because a newer intent was accepted, or on shutdown."""


def describe(exc: BaseException) -> str:
    """An unexpected exception in one line, for a record: `KeyError: 'spec'`."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
