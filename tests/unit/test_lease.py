"""Leader election per site (site/lease.py) on our own Cluster port faked, with injected
clocks: of two replicas exactly one holds a site, a takeover waits a whole lease duration
of its own clock, and a holder that cannot renew stops counting itself the holder before
another replica may take over. The Elected runner stops its agent when the lease is lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler import cluster, errors
from reconciler.site import agent, kubestate, lease, pipeline
from tests import fakes, gitrepo, sites

NAMESPACE = "reconciler-system"
SITE = "edge-a"


class Clock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replica(fake: fakes.FakeCluster, name: str, clock: Clock,
            duration: float = 15.0) -> lease.Lease:
    return lease.Lease(target=fake, namespace=NAMESPACE, site=SITE, holder=name,
                       timing=lease.Timing(duration=duration), clock=clock)


def test_of_two_replicas_exactly_one_holds_the_site() -> None:
    """The first to create the Lease holds it; the other does not, while it is renewed."""
    fake, clock = fakes.FakeCluster(), Clock()
    a, b = replica(fake, "a", clock), replica(fake, "b", clock)
    assert a.acquire()
    assert not b.acquire()
    assert a.held() and not b.held()
    for _ in range(10):  # a renews every 5s; b keeps trying: never 15s unchanged
        clock.now += 5
        assert a.renew()
        assert not b.acquire()
    live = fake.objects[a.ref]
    assert live["spec"]["holderIdentity"] == "a"
    assert live["spec"]["leaseDurationSeconds"] == 15


def test_a_lease_not_renewed_is_taken_over_after_a_whole_duration_by_the_takers_clock() -> None:
    """The taker counts from when it first saw the record, never from the renewTime (another
    machine's clock): 15s unchanged by its own clock, then it takes the lease over."""
    fake, clock = fakes.FakeCluster(), Clock()
    a, b = replica(fake, "a", clock), replica(fake, "b", clock)
    assert a.acquire()
    clock.now += 100  # a is gone; b has never looked
    assert not b.acquire()  # first sight: starts counting
    clock.now += 14.9
    assert not b.acquire()
    clock.now += 0.2
    assert b.acquire()
    assert fake.objects[b.ref]["spec"]["holderIdentity"] == "b"
    assert fake.objects[b.ref]["spec"]["leaseTransitions"] == 1
    assert not a.renew() and not a.held()


def test_the_holder_stops_counting_itself_holder_before_anyone_may_take_over() -> None:
    """`held()` turns False at the renew deadline (10s of 15s) after the start of the last
    renewal that succeeded, while a taker needs 15s of seeing it unchanged."""
    fake, clock = fakes.FakeCluster(), Clock()
    a, b = replica(fake, "a", clock), replica(fake, "b", clock)
    assert a.acquire()
    assert not b.acquire()  # b sees a's record at the same moment it was written
    fake.fail[str(a.ref)] = errors.ClusterError("apiserver unreachable", retryable=True)
    clock.now += 5
    assert not a.renew()  # the write fails: a still holds until its deadline
    assert a.held()
    clock.now += 5
    assert not a.held()  # 10s after the last renewal began
    with pytest.raises(errors.NotLeaderError, match="no longer holds the lease"):
        a.guard()
    del fake.fail[str(a.ref)]
    clock.now += 4.9
    assert not b.acquire()  # 14.9s: not yet
    clock.now += 0.2
    assert b.acquire()


def test_a_released_lease_is_taken_at_once() -> None:
    """A clean stop releases the lease: another replica takes it without waiting."""
    fake, clock = fakes.FakeCluster(), Clock()
    a, b = replica(fake, "a", clock), replica(fake, "b", clock)
    assert a.acquire()
    assert not b.acquire()
    a.release()
    assert not a.held()
    assert b.acquire()


class ReadEarlier:
    """The fake seen by a replica whose read came before another's write: `get` answers
    the object as it was when `snapshot()` was called."""

    def __init__(self, fake: fakes.FakeCluster) -> None:
        self.fake = fake
        self.seen: dict[str, Any] | None = None

    def snapshot(self, ref: cluster.ObjectRef) -> None:
        self.seen = self.fake.get(ref)

    def get(self, ref: cluster.ObjectRef) -> dict[str, Any] | None:
        return self.seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)


def test_two_takers_of_an_expired_lease_one_wins() -> None:
    """Both see the lease expire and read it; the second update carries the resourceVersion
    the first one's replaced: a conflict, and it does not hold the site."""
    fake, clock = fakes.FakeCluster(), Clock()
    late = ReadEarlier(fake)
    a, b = replica(fake, "a", clock), replica(fake, "b", clock)
    c = lease.Lease(target=late, namespace=NAMESPACE, site=SITE,  # type: ignore[arg-type]
                    holder="c", timing=lease.Timing(duration=15.0), clock=clock)
    assert a.acquire()
    late.snapshot(a.ref)
    assert not b.acquire() and not c.acquire()
    clock.now += 16
    assert b.acquire()
    assert not c.acquire()  # read before b's write: its update is refused
    assert b.held() and not c.held()
    assert fake.objects[a.ref]["spec"]["holderIdentity"] == "b"


def test_bad_timing_is_a_usage_error() -> None:
    """Renew every < renew deadline < duration, or a usage error naming them."""
    with pytest.raises(errors.UsageError, match="lease timing"):
        lease.Timing(duration=10, renew_every=8, renew_deadline=5).check()
    lease.Timing(duration=0.3).check()


def test_elected_runs_the_agent_only_while_it_holds_the_lease(tmp_path: Path,
                                                              remote: gitrepo.GitRemote) -> None:
    """An Elected site starts its agent once it holds the lease and stops it when the lease
    is lost (renewals failing past the deadline); its record saves are refused from then."""
    env = sites.Env(tmp_path, remote)
    site_lease = lease.Lease(target=env.cluster, namespace=NAMESPACE, site=sites.SITE,
                             holder="a", timing=lease.Timing(duration=0.9))
    other = lease.Lease(target=env.cluster, namespace=NAMESPACE, site=sites.SITE,
                        holder="b", timing=lease.Timing(duration=0.9))

    def make() -> agent.Agent:
        store = kubestate.KubeStateStore(target=env.cluster, namespace=NAMESPACE,
                                         site=sites.SITE, guard=site_lease.guard)
        return agent.Agent(options=env.options, store=store, target=env.cluster,
                           interval=3600.0, watch_files=False)

    elected = agent.Elected(site=sites.SITE, lease=site_lease, make_agent=make).start()
    try:
        deadline = time.monotonic() + 20
        while not (elected.agent is not None and elected.agent.rollouts >= 1):
            assert time.monotonic() < deadline, "the holder never rolled out"
            threading.Event().wait(0.05)
        assert not other.acquire()
        first = elected.agent
        env.cluster.fail[str(site_lease.ref)] = errors.ClusterError("down", retryable=True)
        while elected.agent is first:
            assert time.monotonic() < deadline, "the agent outlived its lease"
            threading.Event().wait(0.02)
        assert not site_lease.held()
        assert first is not None and first.wait_stopped(0)
    finally:
        env.cluster.fail.clear()
        elected.stop()
    store = kubestate.KubeStateStore(target=env.cluster, namespace=NAMESPACE, site=sites.SITE)
    assert store.load().accepted is not None
    assert pipeline.Options  # the options the agent ran with came from the Env


class StuckAgent:
    """An agent whose rollout is still inside an apply when it is told to stop."""

    def __init__(self) -> None:
        self.box = pipeline.SiteBox.__new__(pipeline.SiteBox)
        self.box.store = None  # type: ignore[assignment]
        self.stops = 0

    def start(self) -> StuckAgent:
        return self

    def trigger(self) -> None:
        pass

    def stop(self) -> bool:
        self.stops += 1
        return False  # a worker still waits for an apply's answer


def test_a_replica_stopped_with_an_apply_in_flight_keeps_its_lease() -> None:
    """A stop that leaves an apply unanswered does not release the lease: another replica
    must wait for it to expire, so that apply cannot land after the other one started."""
    fake, clock = fakes.FakeCluster(), Clock()
    a, b = replica(fake, "a", clock), replica(fake, "b", clock)
    stuck = StuckAgent()
    elected = agent.Elected(site=SITE, lease=a, make_agent=lambda: stuck)  # type: ignore[arg-type,return-value]
    elected.start()
    deadline = time.monotonic() + 10
    while elected.agent is None:
        assert time.monotonic() < deadline, "the agent never started"
        threading.Event().wait(0.01)
    assert not elected.stop()
    assert stuck.stops == 1
    assert fake.objects[a.ref]["spec"]["holderIdentity"] == "a"
    assert not b.acquire()


class AnswerLost:
    """The fake, but the next update is stored and its answer lost (a read timeout)."""

    def __init__(self, fake: fakes.FakeCluster) -> None:
        self.fake = fake
        self.lose_next = False

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        stored = self.fake.update(body)
        if self.lose_next:
            self.lose_next = False
            raise errors.ClusterError("read timed out", retryable=True)
        return stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)


def test_a_renewal_whose_answer_was_lost_does_not_lose_the_lease() -> None:
    """A renewal stored by the server but unanswered leaves a stale resourceVersion: the
    next renewal reads the Lease again, finds this replica its holder, and renews."""
    fake, clock = fakes.FakeCluster(), Clock()
    lossy = AnswerLost(fake)
    a = lease.Lease(target=lossy, namespace=NAMESPACE, site=SITE,  # type: ignore[arg-type]
                    holder="a", timing=lease.Timing(duration=15.0), clock=clock)
    assert a.acquire()
    clock.now += 5
    lossy.lose_next = True
    assert not a.renew()
    clock.now += 5
    assert a.renew()
    clock.now += 9
    assert a.held()


class Forbidden:
    """The fake, where this replica may read Leases but not create or update them."""

    def __init__(self, fake: fakes.FakeCluster) -> None:
        self.fake = fake

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        raise errors.ClusterError('leases.coordination.k8s.io is forbidden: User "sa" cannot '
                                  'create resource "leases"', status=403)

    update = create

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)


def test_a_lease_that_cannot_be_written_is_not_reported_as_held_by_another() -> None:
    """`sync` that cannot take the Lease for an error of its own (RBAC, an unreachable
    API server) says that error, not that another reconciler holds the site."""
    site_lease = lease.Lease(target=Forbidden(fakes.FakeCluster()),  # type: ignore[arg-type]
                             namespace=NAMESPACE, site=SITE, holder="a",
                             timing=lease.Timing(duration=0.3))
    with pytest.raises(errors.StateError) as caught, \
            lease.holding(site_lease, on_lost=lambda: None):
        pass
    assert not isinstance(caught.value, errors.StateLockedError)
    assert "forbidden" in str(caught.value) and "another reconciler" not in str(caught.value)
