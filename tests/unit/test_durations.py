"""Durations as Kubernetes writes them (`30s`, `1m30s`, `1h`, `500ms`), and their short form."""

from __future__ import annotations

import pytest

from reconciler import durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("250ms", 0.25),
        ("1.5m", 90.0),
        (" 10s ", 10.0),
        ("0", 0.0),
        ("1m30s", 90.0),
        ("90s", 90.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("2h45m30.5s", 9930.5),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("100us", 0.0001),
        ("100µs", 0.0001),
        ("1500000ns", 0.0015),
    ],
)
def test_text_is_parsed_to_seconds(text: str, seconds: float) -> None:
    """Go's duration syntax (numbers each with a unit, summed), or a bare whole number of
    seconds, is that many seconds."""
    assert durations.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("number", "seconds"), [(45, 45.0), (2.5, 2.5), (0, 0.0)])
def test_number_is_taken_as_seconds(number: float, seconds: float) -> None:
    """An int or float (as YAML may hand over) is already seconds, returned as a float."""
    result = durations.parse(number)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "text", ["", "  ", "abc", "5d", "1w", "m5", "-5", "-1s", "5 minutes", "1h 30m", "s", ".",
             ".s", "1.5", "30.", "1h-5m", "1m30", "5S", "+5s", "1e3s", "0x10s"])
def test_malformed_text_raises_value_error_naming_it(text: str) -> None:
    """Text that is not Go duration syntax nor a bare whole number is refused, quoting it."""
    with pytest.raises(ValueError, match="invalid duration") as caught:
        durations.parse(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [("", "empty"), ("-1s", "must not be negative"), ("-5", "must not be negative"),
     ("1.5", r"a number with a fraction needs a unit \(1.5s, 1.5m"),
     ("5d", r"e.g. 30s, 5m, 1m30s, 1h, 500ms.*units ns, us, ms, s, m, h")],
)
def test_refusal_says_what_to_write_instead(text: str, says: str) -> None:
    """Each refusal says why: empty, negative, a fraction without a unit, an unknown unit."""
    with pytest.raises(ValueError, match=says):
        durations.parse(text)


def test_negative_number_is_refused() -> None:
    """A negative number of seconds is refused, naming the value."""
    with pytest.raises(ValueError, match=r"invalid duration -1: must not be negative"):
        durations.parse(-1)


def test_boolean_is_refused_rather_than_read_as_one_second() -> None:
    """`True` is an int to Python, but not a duration: it is refused."""
    with pytest.raises(ValueError, match="invalid duration True"):
        durations.parse(True)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.85, "850ms"),
        (0.0, "0ms"),
        (1.25, "1.2s"),
        (9.5, "9.5s"),
        (12.0, "12s"),
        (59.0, "59s"),
        (60.0, "1m00s"),
        (245.0, "4m05s"),
        (3599.0, "59m59s"),
        (3600.0, "1h00m"),
        (3720.0, "1h02m"),
    ],
)
def test_seconds_are_formatted_in_short_form(seconds: float, text: str) -> None:
    """Under a second in ms, under ten with one decimal, then s, m+s, and h+m."""
    assert durations.format_seconds(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(59.6, "1m00s"), (9.96, "10s"), (0.9996, "1.0s")]
)
def test_values_that_round_up_to_the_next_unit_use_that_unit(seconds: float, text: str) -> None:
    """A value that rounds up to a unit boundary is shown in the larger unit's form."""
    assert durations.format_seconds(seconds) == text
