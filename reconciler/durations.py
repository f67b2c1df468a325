"""Parse the durations users write, as Kubernetes writes them (`30s`, `1m30s`, `1h`,
`500ms`). The one parser of the CLI's duration flags and the intent's `healthTimeout`
(through the schemas' `duration` format). Called by cli, repo.schemas and bundle.

The grammar is Go's `time.ParseDuration`, which Kubernetes uses for every duration it
reads (`--timeout=1m30s`, a probe's period, `kubectl wait --timeout`): one or more
numbers, each followed by a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), with an
optional fraction (`1.5h`). Go has no day unit, and neither has this. Two departures,
both kept from this project's contract: a bare whole number is seconds (`30`), and a
negative duration is refused (no flag or field here means anything by one). A bare
number with a fraction (`1.5`) is refused: write the unit (`1.5s`, `1.5m`).

`durationpy` (installed with the `kubernetes` client) parses the same grammar, but takes
`1d` and negative values and refuses the bare `30` this contract allows, so it is not used.
"""

from __future__ import annotations

import re

FORMAT_HELP = "e.g. 30s, 5m, 1m30s, 1h, 500ms; a bare whole number is seconds"

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}
_TERM = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_BARE_WHOLE = re.compile(r"\d+")
_BARE_NUMBER = re.compile(r"\d*\.\d*")


def parse(text: str | int | float) -> float:
    """Seconds in `text`, which is Go duration syntax or a bare whole number of seconds.

    An int or float (as YAML or a default may hand over) is already seconds. Raises
    ValueError quoting the input and saying what is expected.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: expected a duration ({FORMAT_HELP})")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"invalid duration {text!r}: must not be negative")
        return float(text)
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"invalid duration {text!r}: empty; expected {FORMAT_HELP}")
    if stripped.startswith("-"):
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    if _BARE_WHOLE.fullmatch(stripped):
        return float(stripped)
    if _BARE_NUMBER.fullmatch(stripped) and stripped != ".":
        raise ValueError(f"invalid duration {text!r}: a number with a fraction needs a unit "
                         f"({stripped}s, {stripped}m, ...)")
    total, position = 0.0, 0
    for match in _TERM.finditer(stripped):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(stripped) or position == 0:
        raise ValueError(f"invalid duration {text!r}: expected {FORMAT_HELP} "
                         "(units ns, us, ms, s, m, h)")
    return total


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
