"""A real etcd + kube-apiserver + kube-controller-manager on loopback. Called by tests.kube.

running() starts the three processes from the binaries build.sh made, waits until the
API server is ready and the controller manager has made the ``default`` ServiceAccount,
and stops them (SIGTERM, then SIGKILL) on exit. Everything lives under one work dir.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tests.kube import _binaries

# What kube-controller-manager runs: what a GitOps reconciler sees act on its objects.
# namespace: deleted namespaces finalize; garbage-collector: ownerReferences cascade;
# serviceaccount(-token), root-ca-certificate-publisher: what every namespace gets;
# clusterrole-aggregation: admin/edit/view roles fill in; the workload controllers fill
# in status (pods stay Pending: there are no nodes, scheduler or kubelet).
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "resourcequota-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "disruption-controller",
)
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"  # a config value only: nothing listens there
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL


class StartError(RuntimeError):
    """The cluster did not come up; the message carries each process's log tail."""


@dataclasses.dataclass(frozen=True)
class RealCluster:
    """A running cluster: where it listens, how to reach it, where its logs are."""

    url: str
    kubeconfig: Path
    token: str
    ca_file: Path
    workdir: Path
    etcd_url: str
    etcd_log: Path
    apiserver_log: Path
    controller_manager_log: Path
    ready_after: float  # seconds from start until /readyz answered ok
    settled_after: float  # seconds from start until default/default ServiceAccount existed
    audit_log: Path | None = None  # the API server's audit log, when asked for one

    @property
    def logs(self) -> dict[str, Path]:
        """Each process's log file, by process name."""
        return {
            "etcd": self.etcd_log,
            "kube-apiserver": self.apiserver_log,
            "kube-controller-manager": self.controller_manager_log,
        }


@contextlib.contextmanager
def running(
    *,
    workdir: Path | None = None,
    bin_dir: Path | None = None,
    timeout: float = 60.0,
    abort: threading.Event | None = None,
    log: Callable[[str], object] = lambda _line: None,
    clock: Callable[[], float] = time.monotonic,  # injected by tests
    audit_policy: Path | None = None,
    audit_log: Path | None = None,
) -> Iterator[RealCluster]:
    """Start etcd, kube-apiserver and kube-controller-manager; stop them on exit.

    With no workdir a temporary one is made and removed on exit; a given workdir keeps
    the logs and kubeconfig but loses the etcd data. bin_dir defaults to build()'s.
    """
    abort = abort or threading.Event()
    if bin_dir is None:
        bin_dir = _binaries.build(log=log)
    owned = workdir is None
    root = Path(tempfile.mkdtemp(prefix="real-cluster-")) if workdir is None else workdir
    root = root.resolve()
    processes: list[_Process] = []
    try:
        yield _start(
            root=root,
            bin_dir=bin_dir,
            timeout=timeout,
            abort=abort,
            log=log,
            clock=clock,
            processes=processes,
            audit=(audit_policy, audit_log) if audit_policy and audit_log else None,
        )
    finally:
        for process in reversed(processes):
            process.stop(timeout=STOP_TIMEOUT)
        shutil.rmtree(root / "etcd-data", ignore_errors=True)
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def _start(
    *,
    root: Path,
    bin_dir: Path,
    timeout: float,
    abort: threading.Event,
    log: Callable[[str], object],
    clock: Callable[[], float],
    processes: list[_Process],
    audit: tuple[Path, Path] | None = None,
) -> RealCluster:
    """Lay out the work dir and bring the processes up one after another.

    With `audit` (a policy file, a log path) the API server writes its audit log there as
    JSON lines, synchronously, so an event is on disk before its response is sent.
    """
    started = clock()
    deadline = started + timeout
    pki, logs = root / "pki", root / "logs"
    for directory in (pki, logs):
        directory.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    # The controller manager gets a user of its own, so an audit policy can tell its
    # requests from the test's.
    manager_token = secrets.token_hex(16)
    token_file = pki / "tokens.csv"
    token_file.write_text(f"{token},admin,admin,system:masters\n"
                          f"{manager_token},{CONTROLLER_MANAGER_USER},kcm,system:masters\n")
    token_file.chmod(0o600)
    sa_key, sa_pub = pki / "service-account.key", pki / "service-account.pub"
    _make_service_account_key(key=sa_key, pub=sa_pub)

    # etcd first: the API server's storage needs it.
    client_port, peer_port, api_port = _free_ports(3)
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    etcd = _Process.spawn(
        name="etcd",
        argv=[
            str(bin_dir / "etcd"),
            "--name=real-cluster",
            f"--data-dir={root / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=real-cluster={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",  # a throwaway test store: durability buys nothing
            # One member, no peers: elect it in ~0.2 s instead of ~1 s.
            "--heartbeat-interval=25",
            "--election-timeout=125",
            "--log-level=warn",
        ],
        log_file=logs / "etcd.log",
    )
    processes.append(etcd)
    _wait_until(
        what=f"etcd health at {etcd_url}/health",
        ready=lambda: _get(f"{etcd_url}/health", context=None).startswith(b'{"health":"true"'),
        processes=processes,
        deadline=deadline,
        abort=abort,
        clock=clock,
    )
    log(f"kube: etcd up at {etcd_url} after {clock() - started:.1f}s")

    url = f"https://127.0.0.1:{api_port}"
    cert_dir = pki / "apiserver"
    ca_file = cert_dir / "apiserver.crt"  # self-signed: the leaf and its CA, in one file
    apiserver = _Process.spawn(
        name="kube-apiserver",
        argv=[
            str(bin_dir / "kube-apiserver"),
            "--bind-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={cert_dir}",
            f"--etcd-servers={etcd_url}",
            f"--token-auth-file={token_file}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_key}",
            # The default reconciler would publish the loopback advertise address as the
            # kubernetes Service's endpoints, which validation rejects, every 10 s.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            *([f"--audit-policy-file={audit[0]}", f"--audit-log-path={audit[1]}",
               "--audit-log-format=json", "--audit-log-mode=blocking"] if audit else []),
        ],
        log_file=logs / "kube-apiserver.log",
    )
    processes.append(apiserver)
    _wait_until(
        what=f"kube-apiserver {url}/readyz",
        ready=lambda: _ready(url=url, token=token, ca_file=ca_file),
        processes=processes,
        deadline=deadline,
        abort=abort,
        clock=clock,
    )
    ready_after = clock() - started
    log(f"kube: kube-apiserver ready at {url} after {ready_after:.1f}s")

    kubeconfig = root / "kubeconfig"
    _write_kubeconfig(path=kubeconfig, url=url, ca_file=ca_file, token=token)
    manager_kubeconfig = pki / "controller-manager.kubeconfig"
    _write_kubeconfig(path=manager_kubeconfig, url=url, ca_file=ca_file, token=manager_token)
    controller_manager = _Process.spawn(
        name="kube-controller-manager",
        argv=[
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={manager_kubeconfig}",
            "--secure-port=0",  # nobody scrapes it; no port to collide
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={sa_key}",
            f"--root-ca-file={ca_file}",
            "--profiling=false",
        ],
        log_file=logs / "kube-controller-manager.log",
    )
    processes.append(controller_manager)
    _wait_until(
        what="the default ServiceAccount in namespace default",
        ready=lambda: _exists(
            url=f"{url}/api/v1/namespaces/default/serviceaccounts/default",
            token=token,
            ca_file=ca_file,
        ),
        processes=processes,
        deadline=deadline,
        abort=abort,
        clock=clock,
    )
    settled_after = clock() - started
    log(f"kube: kube-controller-manager running; cluster settled after {settled_after:.1f}s")
    return RealCluster(
        url=url,
        kubeconfig=kubeconfig,
        token=token,
        ca_file=ca_file,
        workdir=root,
        etcd_url=etcd_url,
        etcd_log=etcd.log_file,
        apiserver_log=apiserver.log_file,
        controller_manager_log=controller_manager.log_file,
        ready_after=ready_after,
        settled_after=settled_after,
        audit_log=audit[1] if audit else None,
    )


@dataclasses.dataclass
class _Process:
    """One child process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_file: Path

    @classmethod
    def spawn(cls, *, name: str, argv: Sequence[str], log_file: Path) -> _Process:
        """Start argv with stdout and stderr appended to log_file."""
        with log_file.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, and we stop them in order
                preexec_fn=_die_with_parent,
            )
        return cls(name=name, popen=popen, log_file=log_file)

    def tail(self, lines: int = 25) -> str:
        """The last lines of the log."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, *, timeout: float) -> None:
        """SIGTERM, wait up to timeout, then SIGKILL."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGKILL it when our thread dies, so no server outlives us."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _wait_until(
    *,
    what: str,
    ready: Callable[[], bool],
    processes: Sequence[_Process],
    deadline: float,
    abort: threading.Event,
    clock: Callable[[], float],
) -> None:
    """Poll ready() with a short backoff; raise with the logs when a process dies or time's up."""
    delay = 0.05
    while True:
        for process in processes:
            code = process.popen.poll()
            if code is not None:
                raise StartError(
                    f"{process.name} exited with code {code} while waiting for {what}\n"
                    + _tails(processes)
                )
        if ready():
            return
        if clock() >= deadline:
            raise StartError(f"timed out waiting for {what}\n" + _tails(processes))
        if abort.wait(delay):
            raise StartError(f"aborted while waiting for {what}")
        delay = min(delay * 1.5, 0.25)


def _tails(processes: Sequence[_Process]) -> str:
    """Each process's log tail, headed by its name and log path."""
    return "\n".join(
        f"--- {process.name} ({process.log_file}):\n{process.tail()}" for process in processes
    )


def _free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now (held open together so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _make_service_account_key(*, key: Path, pub: Path) -> None:
    """An RSA key pair for signing and checking ServiceAccount tokens (via openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StartError("openssl not found: it makes the service account signing key")
    commands = [
        [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
         "-out", str(key)],
        [openssl, "pkey", "-in", str(key), "-pubout", "-out", str(pub)],
    ]  # fmt: skip
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StartError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")


def _tls_context(*, ca_file: Path | None) -> ssl.SSLContext | None:
    """A context trusting ca_file, or None for plain HTTP."""
    if ca_file is None:
        return None
    return ssl.create_default_context(cafile=str(ca_file))


def _get(url: str, *, context: ssl.SSLContext | None, token: str | None = None) -> bytes:
    """The body of a GET, or b"" on any connection or HTTP error (callers poll)."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return bytes(response.read())
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return b""


def _ready(*, url: str, token: str, ca_file: Path) -> bool:
    """Whether the API server's /readyz says ok (its self-signed cert must exist first)."""
    if not ca_file.exists():
        return False
    try:
        context = _tls_context(ca_file=ca_file)
    except (OSError, ssl.SSLError):
        return False  # still being written
    return _get(f"{url}/readyz", context=context, token=token) == b"ok"


def _exists(*, url: str, token: str, ca_file: Path) -> bool:
    """Whether GET url finds an object."""
    body = _get(url, context=_tls_context(ca_file=ca_file), token=token)
    return bool(body) and json.loads(body).get("kind") not in (None, "Status")


def _write_kubeconfig(*, path: Path, url: str, ca_file: Path, token: str) -> None:
    """A kubeconfig for the admin token, trusting the API server's self-signed CA."""

    def quote(value: str) -> str:
        return json.dumps(value)  # a JSON string is a YAML double-quoted scalar

    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: real-cluster\n"
        "  cluster:\n"
        f"    server: {quote(url)}\n"
        f"    certificate-authority: {quote(str(ca_file))}\n"
        "users:\n"
        "- name: admin\n"
        "  user:\n"
        f"    token: {quote(token)}\n"
        "contexts:\n"
        "- name: real-cluster\n"
        "  context:\n"
        "    cluster: real-cluster\n"
        "    user: admin\n"
        "    namespace: default\n"
        "current-context: real-cluster\n"
    )
    path.chmod(0o600)
