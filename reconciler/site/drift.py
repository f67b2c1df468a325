"""Does a live object already hold what we would apply? Pure logic, called by rollout.

An object whose live state contains every field of the desired manifest (maps compared
key by key, lists element by element) is in sync: applying it again would change nothing,
so it is not written. Fields the server or controllers add (status, defaults, metadata the
server manages) do not count as drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_IGNORED_TOP_LEVEL = ("apiVersion", "kind", "status")


def in_sync(*, desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """True when every field of `desired` has the same value in `live`."""
    return all(
        key in live and _contains(live[key], value)
        for key, value in desired.items()
        if key not in _IGNORED_TOP_LEVEL
    )


def _contains(live: Any, desired: Any) -> bool:
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and _contains(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, Sequence) and not isinstance(desired, str | bytes):
        return (
            isinstance(live, Sequence) and not isinstance(live, str | bytes)
            and len(live) == len(desired)
            and all(_contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(desired) is type(live) and desired == live
    return bool(desired == live)
