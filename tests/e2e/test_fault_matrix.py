"""Faults on both sides of the long-running agent: a Git remote unreachable, slow, refusing
or serving a corrupt pack; an API server answering 5xx, 429, 409, too late, or resetting.

Each runs the real agent (real Git, the real adapter, the local or real API server, faults
from the local cluster or the fault proxy) and checks the same four things: the error is
clear and names the thing; the site is Degraded with that reason; nothing is deleted while
the fault lasts; and once it is removed the site converges on its own, with no trigger.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import kube, localcluster
from reconciler.repo import source
from reconciler.site import agent, metrics, pipeline, report, rollout, state
from tests import gitrepo, gitservers
from tests.e2e.conftest import SITE, SITE_NAMESPACE, ClusterUnderTest, kubectl_run

pytestmark = pytest.mark.e2e

BASE = "sfo-baseline-1"  # the sample repository's intent
NEW = "sfo-prune-2"  # drops the ConfigMap: a success would prune it
WC_PATH = r"/workloadclusters/sfo-wc-01$"
WC = "WorkloadCluster/sfo-ran/sfo-wc-01"
PRUNABLE = "sfo-site-config"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.05)


@pytest.fixture(autouse=True)
def quick_apply_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our own retry pauses shortened, so a faulted rollout fails in well under a second."""
    monkeypatch.setattr(rollout, "RETRY_DELAYS", (0.1, 0.1, 0.1))


@contextlib.contextmanager
def agent_on(*, target: ClusterUnderTest, url: str, tmp_path: Path,
             access: source.Access | None = None,
             request_timeout: float | None = None) -> Iterator[tuple[agent.Agent,
                                                                     metrics.Metrics]]:
    """The agent for the site, polling only hourly: every quicker pass is the backoff's
    (at most 0.5s here) or the test's trigger. Started after the fault proxy, if any."""
    adapter = kube.connect(kubeconfig=target.kubeconfig,
                           **({"request_timeout": request_timeout} if request_timeout else {}))
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    options = pipeline.Options(url=url, site=SITE, cache_dir=tmp_path / "cache",
                               access=access or source.Access())
    meter = metrics.Metrics()
    with store.lock():
        running = agent.Agent(options=options, store=store, target=adapter, interval=3600.0,
                              watch_files=False, max_backoff=0.5, observer=meter).start()
        try:
            yield running, meter
        finally:
            running.stop()
            adapter.close()


def converged(running: agent.Agent, intent: str) -> bool:
    current = running.box.current
    return (current.accepted is not None and current.accepted.id == intent
            and current.last_sync is not None and current.last_sync.result == "ok"
            and current.degraded is None)


def degraded_twice(running: agent.Agent) -> bool:
    found = running.box.current.degraded
    return found is not None and found.failures >= 2


def gauge(meter: metrics.Metrics) -> float | None:
    return meter.registry.get_sample_value("reconciler_site_degraded", {"site": SITE})


def deletes(target: ClusterUnderTest, since: float) -> list[str]:
    """Delete requests the cluster served since `since`."""
    return [r.path for r in target.requests(since) if r.verb == "delete"]


def configmap_exists(target: ClusterUnderTest) -> bool:
    done = kubectl_run(target, "get", "configmap", PRUNABLE, "-n", SITE_NAMESPACE)
    return done.returncode == 0


def land_pruning_intent(remote: gitrepo.GitRemote) -> None:
    """A newer intent without the ConfigMap: its success, and only that, prunes it."""
    remote.remove(f"sites/{SITE}/manifests/30-configmap.yaml")
    gitrepo.restamp(remote, site=SITE, new_id=NEW, sequence=2)
    remote.commit_and_push(f"Intent {NEW}\n\nIntent-Id: {NEW}")


def check_degraded(running: agent.Agent, meter: metrics.Metrics, *, stage: str,
                   names: tuple[str, ...]) -> state.Degraded:
    """Degraded in the record, in `status`'s text and in the metric, naming `names`."""
    found = running.box.current.degraded
    assert found is not None and found.stage == stage, found
    for name in names:
        assert name in found.message, (name, found.message)
    line = next(x for x in report.status_text(running.box.current).splitlines()
                if x.startswith("Degraded:"))
    assert f"{stage}: {found.message}" in line
    assert gauge(meter) == 1
    return found


# --- the API server --------------------------------------------------------------------

API_FAULTS = {
    "500": (localcluster.Fault(verb="apply", path_regex=WC_PATH, status=500, times=None),
            "apply failed: Internal error occurred: injected fault"),
    "503": (localcluster.Fault(verb="apply", path_regex=WC_PATH, status=503, times=None),
            "apply failed: the server is currently unable to handle the request"),
    "429": (localcluster.Fault(verb="apply", path_regex=WC_PATH, status=429, times=None),
            "apply failed: Too many requests"),
    "409": (localcluster.Fault(verb="apply", path_regex=WC_PATH, status=409, times=None),
            "apply failed: Operation cannot be fulfilled"),
    "reset": (localcluster.Fault(verb="apply", path_regex=WC_PATH, drop_connection=True,
                                 times=None), "cannot reach the API server"),
}


@pytest.mark.parametrize("name", sorted(API_FAULTS))
def test_api_fault_degrades_prunes_nothing_and_recovers(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        name: str) -> None:
    """An API server failing every apply of one object (500, 503, 429, 409, a reset
    connection): the rollout of a newer intent fails naming the object and the answer, the
    site is Degraded at the apply, nothing is pruned although the intent drops an object,
    and once the fault is removed the agent converges and prunes on its own."""
    fault, expected = API_FAULTS[name]
    faults = any_cluster.faults  # before the agent connects: the proxy, for a real server
    with agent_on(target=any_cluster, url=remote.url, tmp_path=tmp_path) as (running, meter):
        wait_for("the baseline", lambda: converged(running, BASE))
        assert gauge(meter) == 0
        handle = faults.add(fault)
        since = time.time()
        land_pruning_intent(remote)
        running.trigger()
        wait_for("two failed passes", lambda: degraded_twice(running))
        check_degraded(running, meter, stage="apply", names=(WC, expected))
        assert deletes(any_cluster, since) == []
        assert configmap_exists(any_cluster)
        handle.remove()
        wait_for("convergence after the fault", lambda: converged(running, NEW))
        assert gauge(meter) == 0
        assert not configmap_exists(any_cluster)  # pruned, now that the rollout succeeded


def test_api_timeout_degrades_prunes_nothing_and_recovers(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """Applies held longer than the request timeout (1.5s here, --request-timeout) fail as
    a timeout naming the object; Degraded, nothing pruned, and the site converges once the
    server is quick again."""
    faults = any_cluster.faults
    with agent_on(target=any_cluster, url=remote.url, tmp_path=tmp_path,
                  request_timeout=1.5) as (running, meter):
        wait_for("the baseline", lambda: converged(running, BASE))
        # Held past the client's timeout, then never handled: a proxy that forwarded it late
        # would let the write land after the test (a late write is item 3's, not this one's).
        handle = faults.add(localcluster.Fault(verb="apply", path_regex=WC_PATH,
                                               latency=2.5, drop_connection=True, times=None))
        since = time.time()
        land_pruning_intent(remote)
        running.trigger()
        wait_for("two failed passes", lambda: degraded_twice(running), timeout=90)
        found = check_degraded(running, meter, stage="apply", names=(f"{WC} apply failed",))
        # The server's own deadline for the write (shorter than the client's), or the
        # client's timeout when a proxy holds the request before the server sees it.
        assert ("within requested timeout" in found.message
                or "cannot reach the API server" in found.message), found.message
        assert deletes(any_cluster, since) == []
        handle.remove()
        wait_for("convergence after the fault", lambda: converged(running, NEW), timeout=90)
        assert not configmap_exists(any_cluster)


def test_429_retry_waits_as_long_as_retry_after_says(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A 429 with `Retry-After: 1` holds the retry at least a second, not our own 0.1s:
    the request log shows the gap (local), and the log says why (both)."""
    faults = any_cluster.faults
    handle = faults.add(localcluster.Fault(verb="apply", path_regex=WC_PATH, status=429))
    caplog.set_level(logging.WARNING)
    adapter = kube.connect(kubeconfig=any_cluster.kubeconfig)
    store = state.FileStateStore(state_dir=tmp_path / "state", site=SITE)
    options = pipeline.Options(url=remote.url, site=SITE, cache_dir=tmp_path / "cache")
    try:
        with store.lock():
            result = pipeline.sync_once(options=options, store=store, target=adapter)
    finally:
        adapter.close()
    assert result.ok, result.message
    assert handle.hits == 1
    assert "retrying in 1.0s (the server's Retry-After)" in caplog.text
    if any_cluster.local is not None:  # the proxy answers the 429 itself: not in the audit
        applies = [r for r in any_cluster.requests() if r.verb == "patch"
                   and r.patch_type == "apply" and r.name == "sfo-wc-01"]
        assert [r.status for r in applies][:2] == [429, applies[1].status]
        assert applies[1].time - applies[0].handled >= 0.95


# --- the Git remote --------------------------------------------------------------------


class TcpProxy:
    """A TCP proxy on loopback in front of `upstream_port`, whose `mode` decides what each
    new connection gets: `forward`; `slow` (every chunk from the server held `delay`
    seconds); `close` (accepted and closed at once, a daemon that hangs up); `http 500` or
    `http 403` (that answer, then closed); `down` (the port closed: connection refused)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "forward"
        self.delay = 3.0
        self.port = gitservers.free_port()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._open: list[socket.socket] = []
        self.listen()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def listen(self) -> None:
        """Open the port (again, after `down()`)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self.mode = "forward"
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Close the port: a connection is refused, as by a host with nothing listening."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def close(self) -> None:
        self._stopped.set()
        self.down()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._open.append(client)
            threading.Thread(target=self._serve, args=(client, self.mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        if mode == "close":
            client.close()
            return
        if mode.startswith("http "):
            with contextlib.suppress(OSError):
                client.recv(65536)
                code = mode.split()[1]
                client.sendall(f"HTTP/1.1 {code} Refused\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n".encode())
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
        except OSError:
            client.close()
            return
        self._open.append(upstream)
        delay = self.delay if mode == "slow" else 0.0
        threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
        self._pump(upstream, client, delay)

    def _pump(self, source_sock: socket.socket, sink: socket.socket, delay: float) -> None:
        with contextlib.suppress(OSError):
            while not self._stopped.is_set():
                chunk = source_sock.recv(65536)
                if not chunk:
                    break
                if delay:
                    self._stopped.wait(delay)
                sink.sendall(chunk)
        for sock in (source_sock, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def daemon_proxy(remote: gitrepo.GitRemote) -> Iterator[tuple[TcpProxy, str]]:
    """`git daemon` serving the remote, behind a TcpProxy; the git:// URL through it."""
    with gitservers.git_daemon(remote.bare.parent) as url:
        proxy = TcpProxy(int(url.rsplit(":", 1)[1]))
        try:
            yield proxy, f"git://{proxy.address}/{remote.bare.name}"
        finally:
            proxy.close()


@pytest.fixture
def http_proxy(remote: gitrepo.GitRemote) -> Iterator[tuple[TcpProxy, str]]:
    """Smart HTTP serving the remote, behind a TcpProxy; the http:// URL through it."""
    with gitservers.git_http(remote.bare.parent) as url:
        proxy = TcpProxy(int(url.rsplit(":", 1)[1]))
        try:
            yield proxy, f"http://{proxy.address}/{remote.bare.name}"
        finally:
            proxy.close()


def git_fault(*, cluster: ClusterUnderTest, url: str, tmp_path: Path, on: Callable[[], None],
              off: Callable[[], None], names: tuple[str, ...],
              access: source.Access | None = None) -> None:
    """The common course of a Git fault: baseline, fault, Degraded at the fetch naming
    `names`, no delete, fault removed, converged again with no trigger."""
    with agent_on(target=cluster, url=url, tmp_path=tmp_path, access=access) as (running,
                                                                                   meter):
        wait_for("the baseline", lambda: converged(running, BASE))
        on()
        since = time.time()
        running.trigger()
        wait_for("two failed fetches", lambda: degraded_twice(running))
        check_degraded(running, meter, stage="fetch",
                       names=(f"fetch of branch 'main' from {source.redact_url(url)}", *names))
        assert deletes(cluster, since) == []
        passes = running.passes
        off()
        wait_for("convergence after the fault", lambda: converged(running, BASE))
        assert running.passes > passes
        assert gauge(meter) == 0


def test_unreachable_remote(local_cluster: ClusterUnderTest, daemon_proxy: tuple[TcpProxy, str],
                            tmp_path: Path) -> None:
    """A remote whose port is closed: connection refused, Degraded, then recovered."""
    proxy, url = daemon_proxy
    git_fault(cluster=local_cluster, url=url, tmp_path=tmp_path, on=proxy.down,
              off=proxy.listen, names=("failed", "Connection refused"))


def test_slow_remote_times_out(local_cluster: ClusterUnderTest,
                               daemon_proxy: tuple[TcpProxy, str], tmp_path: Path) -> None:
    """A remote slower than --git-timeout (2s here): the fetch is stopped at the timeout,
    Degraded says so, and a quick remote again converges."""
    proxy, url = daemon_proxy

    def slow() -> None:
        proxy.mode = "slow"

    def quick() -> None:
        proxy.mode = "forward"

    git_fault(cluster=local_cluster, url=url, tmp_path=tmp_path, on=slow, off=quick,
              names=("timed out after 2.0s (--git-timeout)",),
              access=source.Access(timeout=2.0))


def test_daemon_hanging_up(local_cluster: ClusterUnderTest,
                           daemon_proxy: tuple[TcpProxy, str], tmp_path: Path) -> None:
    """A daemon that closes every connection at once: git's own words, Degraded, recovered."""
    proxy, url = daemon_proxy

    def hang_up() -> None:
        proxy.mode = "close"

    def answer() -> None:
        proxy.mode = "forward"

    git_fault(cluster=local_cluster, url=url, tmp_path=tmp_path, on=hang_up, off=answer,
              names=("failed: ",))


@pytest.mark.parametrize("code", ["500", "403"])
def test_http_remote_refusing(local_cluster: ClusterUnderTest,
                              http_proxy: tuple[TcpProxy, str], tmp_path: Path,
                              code: str) -> None:
    """A smart-HTTP remote answering 500 or 403: the code in the error, Degraded, recovered."""
    proxy, url = http_proxy

    def refuse() -> None:
        proxy.mode = f"http {code}"

    def answer() -> None:
        proxy.mode = "forward"

    git_fault(cluster=local_cluster, url=url, tmp_path=tmp_path, on=refuse, off=answer,
              names=(f"returned error: {code}",))


def test_remote_with_a_corrupt_pack(local_cluster: ClusterUnderTest,
                                    remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """A remote whose pack holding a new commit is corrupt: the fetch fails naming it,
    Degraded, nothing deleted; the pack repaired, the new commit is taken."""
    saved = tmp_path / "pack-saved"

    def corrupt() -> None:
        remote.write("README.extra", "more\n" * 2000)
        remote.commit_and_push("A commit whose objects only the pack holds")
        subprocess.run(["git", "-C", str(remote.bare), "repack", "-adq"], check=True)
        (pack,) = (remote.bare / "objects" / "pack").glob("*.pack")
        shutil.copyfile(pack, saved)
        pack.chmod(0o644)
        data = bytearray(pack.read_bytes())
        for offset in range(200, len(data) - 40, 97):
            data[offset] ^= 0xFF
        pack.write_bytes(bytes(data))

    def repair() -> None:
        (pack,) = (remote.bare / "objects" / "pack").glob("*.pack")
        shutil.copyfile(saved, pack)

    git_fault(cluster=local_cluster, url=remote.url, tmp_path=tmp_path, on=corrupt,
              off=repair, names=("failed: ",))


def test_damaged_cache_between_passes_is_repaired(local_cluster: ClusterUnderTest,
                                                  remote: gitrepo.GitRemote,
                                                  tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A cache left with a stale ref lock and a garbage HEAD (a kill mid-fetch, a torn
    write) is repaired by the next pass, which takes a newer intent as usual."""
    caplog.set_level(logging.WARNING)
    with agent_on(target=local_cluster, url=remote.url, tmp_path=tmp_path) as (running, _):
        wait_for("the baseline", lambda: converged(running, BASE))
        (cached,) = (tmp_path / "cache").glob("*.git")
        (cached / "refs" / "reconciler" / "heads" / "main.lock").write_text("")
        (cached / "HEAD").write_bytes(b"\x00garbage")
        land_pruning_intent(remote)
        running.trigger()
        wait_for("the newer intent", lambda: converged(running, NEW))
    assert f"the git cache {cached} is damaged" in caplog.text
    assert running.failures == 0
