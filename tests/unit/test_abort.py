"""The abort signal and its gate: what makes a newer intent stop the old rollout at once."""

from __future__ import annotations

import threading
import time

import pytest

from reconciler import errors
from reconciler.site import abort


def test_wait_returns_at_once_when_set():
    """A wait in progress ends as soon as the signal is set, not at its timeout."""
    signal = abort.Abort()
    threading.Timer(0.05, signal.set, args=("superseded by b",),
                    kwargs={"superseded_by": "b"}).start()
    started = time.monotonic()
    assert signal.wait(30.0) is True
    assert time.monotonic() - started < 5.0
    assert signal.superseded_by == "b" and not signal.shutdown


def test_first_reason_wins():
    """A second set() keeps the first reason."""
    signal = abort.Abort()
    signal.set("shutdown")
    signal.set("superseded by b", superseded_by="b")
    assert signal.reason == "shutdown" and signal.shutdown


def test_gate_refuses_once_set():
    """No apply passes the gate after the signal is set."""
    signal = abort.Abort()
    with signal.gate():
        pass
    signal.set("superseded by b", superseded_by="b")
    with pytest.raises(errors.AbortedError, match="superseded by b"), signal.gate():
        raise AssertionError("the gate let an apply through")


def test_drain_waits_for_applies_in_flight():
    """drain() returns only after every apply already inside the gate has finished."""
    signal = abort.Abort()
    inside, release = threading.Event(), threading.Event()
    finished: list[float] = []

    def apply() -> None:
        with signal.gate():
            inside.set()
            release.wait(5)
            finished.append(time.monotonic())

    worker = threading.Thread(target=apply)
    worker.start()
    assert inside.wait(5)
    signal.set("superseded by b", superseded_by="b")
    threading.Timer(0.1, release.set).start()
    assert signal.drain(timeout=5) is True
    drained = time.monotonic()
    worker.join()
    assert finished and finished[0] <= drained


def test_drain_times_out_when_an_apply_hangs():
    """drain() gives up after its timeout and says so."""
    signal = abort.Abort()
    entered = threading.Event()
    release = threading.Event()

    def apply() -> None:
        with signal.gate():
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=apply)
    worker.start()
    entered.wait(5)
    signal.set("shutdown")
    assert signal.drain(timeout=0.05) is False
    release.set()
    worker.join()
