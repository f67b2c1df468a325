"""Kubernetes `Status` error bodies, worded as a real kube-apiserver words them.

Used by the store and the API handlers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Cause:
    """One `details.causes` entry of a Status."""

    type: str
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        """The JSON form, with empty keys left out as the real server does."""
        out = {"reason": self.type, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


class ApiError(Exception):
    """A request the API answers with a Failure `Status`; a retry helps only for 409/429/5xx."""

    def __init__(
        self,
        *,
        code: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details) if details is not None else None
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The `Status` object the server sends."""
        return failure(
            code=self.code, reason=self.reason, message=self.message, details=self.details
        )


def failure(
    *, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A Failure `Status` body."""
    out: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        out["reason"] = reason
    if details is not None:
        out["details"] = dict(details)
    out["code"] = code
    return out


def success(*, name: str, group: str, resource: str, uid: str) -> dict[str, Any]:
    """The `Status` a delete answers with for kinds that do not return the deleted object."""
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = resource
    details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def qualified(resource: str, group: str) -> str:
    """`configmaps` for the core group, `deployments.apps` otherwise."""
    return f"{resource}.{group}" if group else resource


def _details(*, name: str, group: str, resource: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = resource
    return details


def not_found(*, resource: str, group: str, name: str) -> ApiError:
    """`configmaps "a" not found`."""
    return ApiError(
        code=404,
        reason="NotFound",
        message=f'{qualified(resource, group)} "{name}" not found',
        details=_details(name=name, group=group, resource=resource),
    )


def already_exists(*, resource: str, group: str, name: str) -> ApiError:
    """`configmaps "a" already exists`."""
    return ApiError(
        code=409,
        reason="AlreadyExists",
        message=f'{qualified(resource, group)} "{name}" already exists',
        details=_details(name=name, group=group, resource=resource),
    )


def conflict(*, resource: str, group: str, name: str, why: str) -> ApiError:
    """`Operation cannot be fulfilled on configmaps "a": <why>`."""
    return ApiError(
        code=409,
        reason="Conflict",
        message=f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        details=_details(name=name, group=group, resource=resource),
    )


STALE_OBJECT = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid(*, kind: str, group: str, name: str, causes: Sequence[Cause]) -> ApiError:
    """422 `Kind.group "name" is invalid: field: message` (several causes in brackets)."""
    qualified_kind = f"{kind}.{group}" if group else kind
    texts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    if not texts:
        message = f'{qualified_kind} "{name}" is invalid'
    elif len(texts) == 1:
        message = f'{qualified_kind} "{name}" is invalid: {texts[0]}'
    else:
        message = f'{qualified_kind} "{name}" is invalid: [{", ".join(texts)}]'
    details: dict[str, Any] = {"name": name} if name else {}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [c.to_dict() for c in causes]
    return ApiError(code=422, reason="Invalid", message=message, details=details)


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(code=400, reason="BadRequest", message=message)


def forbidden(*, resource: str, group: str, name: str, why: str) -> ApiError:
    """403 `namespaces "default" is forbidden: <why>`."""
    return ApiError(
        code=403,
        reason="Forbidden",
        message=f'{qualified(resource, group)} "{name}" is forbidden: {why}',
        details=_details(name=name, group=group, resource=resource),
    )


def method_not_allowed() -> ApiError:
    """405 for a verb the resource does not serve."""
    return ApiError(
        code=405,
        reason="MethodNotAllowed",
        message="the server does not allow this method on the requested resource",
        details={},
    )


def resource_not_found() -> ApiError:
    """404 for a path in a served group version that names no resource."""
    return ApiError(
        code=404,
        reason="NotFound",
        message="the server could not find the requested resource",
        details={},
    )


def unsupported_media_type(accepted: Sequence[str]) -> ApiError:
    """415 for a body in a format the endpoint does not take."""
    return ApiError(
        code=415,
        reason="UnsupportedMediaType",
        message=(
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted)
        ),
        details={},
    )


def internal(message: str) -> ApiError:
    """500 `Internal error occurred: <message>`."""
    return ApiError(
        code=500,
        reason="InternalError",
        message=f"Internal error occurred: {message}",
        details={"causes": [{"message": message}]},
    )


def too_many_requests(*, retry_after: int = 1) -> ApiError:
    """429 as the API priority and fairness filter answers it."""
    return ApiError(
        code=429,
        reason="TooManyRequests",
        message="Too many requests, please try again later.",
        details={"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def request_timeout(timeout: float) -> ApiError:
    """A write the server gave up on at its deadline (`timeout` query parameter, at most
    34 s): nothing was written. Worded as kube-apiserver's finishRequest words it."""
    return ApiError(
        code=504, reason="Timeout",
        message=f"request did not complete within requested timeout - context deadline "
                f"exceeded ({timeout:g}s)",
    )


def unauthorized() -> ApiError:
    """401 for a bearer token the cluster does not know."""
    return ApiError(code=401, reason="Unauthorized", message="Unauthorized")


def for_code(*, code: int, resource: str, group: str, name: str) -> ApiError:
    """An error for an injected fault: worded as the real server words that code."""
    if code == 409:
        return conflict(resource=resource, group=group, name=name, why=STALE_OBJECT)
    if code == 429:
        return too_many_requests()
    if code == 404:
        return not_found(resource=resource, group=group, name=name)
    if code == 500:
        return internal("injected fault")
    if code == 503:
        return ApiError(
            code=503,
            reason="ServiceUnavailable",
            message="the server is currently unable to handle the request",
        )
    if code == 504:
        return ApiError(
            code=504,
            reason="Timeout",
            message="the server was unable to return a response in the time allotted, "
            "but may still be processing the request",
        )
    return ApiError(code=code, reason="", message=f"injected fault (status {code})")
