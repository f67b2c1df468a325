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
    assert signal.drain(timeout=5) is abort.Drain.DRAINED
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
    assert signal.drain(timeout=0.05) is abort.Drain.TIMED_OUT
    release.set()
    worker.join()


def test_shut_down_ends_a_drain_at_once_and_withdraws_the_supersession():
    """shut_down() ends a drain that waits on a hanging apply, which then counts as a
    shutdown: the newer intent is not to be recorded, so the rollout is not superseded."""
    signal = abort.Abort()
    entered, release = threading.Event(), threading.Event()

    def apply() -> None:
        with signal.gate():
            entered.set()
            release.wait(30)

    worker = threading.Thread(target=apply)
    worker.start()
    assert entered.wait(5)
    signal.set("superseded by b", superseded_by="b")
    threading.Timer(0.1, signal.shut_down).start()
    started = time.monotonic()
    try:
        assert signal.drain(timeout=30) is abort.Drain.INTERRUPTED
        assert time.monotonic() - started < 5.0
        assert signal.shutdown and signal.superseded_by is None
        with pytest.raises(errors.AbortedError, match="shutdown"):
            signal.check()
    finally:
        release.set()
        worker.join()


def test_shut_down_keeps_the_supersession_when_nothing_is_in_flight():
    """A drain with no apply left in flight is complete even after shut_down(): the newer
    intent may be recorded, and the rollout stays superseded by it."""
    signal = abort.Abort()
    signal.set("superseded by b", superseded_by="b")
    signal.shut_down()
    assert signal.drain(timeout=5) is abort.Drain.DRAINED
    assert signal.superseded_by == "b" and not signal.shutdown


def test_shut_down_sets_an_unset_signal():
    """shut_down() on a running rollout aborts it for shutdown."""
    signal = abort.Abort()
    signal.shut_down()
    assert signal.is_set and signal.shutdown and signal.reason == "shutdown"
