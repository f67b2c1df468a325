"""Parse the durations users write (`30`, `30s`, `5m`, `1h`). Called by the CLI and bundle."""

from __future__ import annotations

import re

_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse(text: str | int | float) -> float:
    """Seconds in `text`; a bare number is seconds. Raises ValueError naming the input."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30, 30s, 5m, 1h")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"invalid duration {text!r}: must not be negative")
        return float(text)
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30, 30s, 5m, 1h")
    return float(match.group(1)) * _FACTORS[match.group(2)]


def format_seconds(seconds: float) -> str:
    """A short human form: `850ms`, `2.5s`, `12s`, `4m05s`, `1h02m` (rounded, then unit)."""
    if round(seconds * 1000) < 1000:
        return f"{round(seconds * 1000)}ms"
    if round(seconds, 1) < 10:
        return f"{round(seconds, 1):.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
