"""The project's exceptions. Every stage raises these; the CLI maps them to exit codes.

Each error says whether a retry can help (`retryable`): a network blip can heal, a bad
manifest cannot until someone commits a fix.
"""

from __future__ import annotations


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


class BundleError(ReconcilerError):
    """The site's files at a revision cannot be read: missing, unsafe, or not YAML."""


class YAMLSyntaxError(BundleError):
    """A file is not valid YAML; `line` and `column` are 1-based where YAML gives them."""

    def __init__(self, message: str, *, file: str, line: int | None = None,
                 column: int | None = None, problem: str = "") -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.column = column
        self.problem = problem or message


class ValidationError(ReconcilerError):
    """Documents read fine but break a schema or a protocol rule."""

    def __init__(self, message: str, *, findings: list[str] | None = None) -> None:
        super().__init__(message)
        self.findings = findings or [message]


class StateError(ReconcilerError):
    """The state file is unreadable, corrupt, or of an unknown format."""


class StateLockedError(StateError):
    """Another reconciler holds the site's state lock."""


class ClusterError(ReconcilerError):
    """The cluster refused or failed a request."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class ApplyError(ClusterError):
    """A server-side apply of one object failed."""


class ConflictError(ApplyError):
    """Server-side apply found fields owned by another manager."""


class NotFoundError(ClusterError):
    """The object or its kind does not exist on the cluster."""


class AbortedError(ReconcilerError):
    """The rollout was stopped because a newer intent was accepted, or on shutdown."""
