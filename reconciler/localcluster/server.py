"""The local cluster's HTTP server, its lifecycle (`LocalCluster`) and the foreground `run()`.

Used by the tests and the demo (`LocalCluster`) and by `reconciler local-cluster` (`run()`).
Speaks HTTP/1.1 on loopback; watches stream chunked newline-delimited JSON.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import queue
import select
import signal
import socket
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from reconciler.localcluster import api, faults, kubeconfig, requestlog, statuses, store

JOIN_TIMEOUT = 5.0
_POLL = 0.2


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke mid-request is the client's business: print nothing."""


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
    """One connection; `cluster` is set on the subclass each LocalCluster makes."""

    protocol_version = "HTTP/1.1"
    server_version = "localcluster"
    sys_version = ""
    timeout = 120
    cluster: LocalCluster

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm holds the
        # body back until the client's delayed ACK, about 40 ms on every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.cluster._track(self.connection, threading.current_thread(), add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.cluster._track(self.connection, threading.current_thread(), add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Library use logs nothing."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        arrived = time.time()
        cluster = self.cluster
        request = api.Request.of(method=self.command, target=self.path,
                                 headers=dict(self.headers.items()), body=self._read_body())
        target, body, body_error = cluster._api.classify(request)
        try:
            fault = cluster.faults.match(verb=target.verb, patch_type=target.patch_type,
                                         path=request.path, kind=target.kind)
            if fault is not None and fault.latency > 0:
                # A stall inside the server: past the request's deadline the server gives
                # up and writes nothing, as kube-apiserver's context deadline does.
                deadline = api.deadline(request, target)
                if fault.latency > deadline:
                    cluster._stopping.wait(deadline)
                    response = api.error_response(statuses.request_timeout(deadline))
                    cluster._log(arrived, target, request, response.code)
                    self._send(response)
                    return
                cluster._stopping.wait(fault.latency)
            if fault is not None and fault.drop_connection:
                cluster._log(arrived, target, request, 0)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            response = self._answer(request, target, body, body_error, fault)
            if response.watch is not None:
                self._stream(response.watch, on_start=lambda: cluster._log(arrived, target,
                                                                           request, 200))
                return
            cluster._log(arrived, target, request, response.code)
            self._send(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _answer(self, request: api.Request, target: api.Target, body: Any,
                body_error: statuses.ApiError | None, fault: faults.Fault | None
                ) -> api.Response:
        authorization = request.headers.get("authorization", "")
        if fault is not None and fault.status is not None:
            route = target.route
            return api.error_response(statuses.for_code(
                code=fault.status,
                resource=target.rtype.plural if target.rtype else (route.plural if route else ""),
                group=target.rtype.group if target.rtype else "",
                name=target.name or "",
            ))
        if authorization and authorization != f"Bearer {kubeconfig.TOKEN}":
            return api.error_response(statuses.unauthorized())
        # No token at all is served, as the old insecure port of kube-apiserver was: kubectl
        # and client-go never send a bearer token over plain HTTP. A real server answers
        # such a request as system:anonymous with 403; the real-cluster tests catch a
        # client that forgets its credentials.
        try:
            return self.cluster._api.handle(request, target, body, body_error)
        except Exception as exc:  # a bug here must still answer, as the apiserver's recovery does
            return api.error_response(statuses.internal(f"{type(exc).__name__}: {exc}"))

    def _send(self, response: api.Response) -> None:
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable:
                peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
                return peeked == b""
        except (OSError, ValueError):
            return True
        return False

    def _stream(self, watch: api.WatchStream, *, on_start: Callable[[], None]) -> None:
        cluster = self.cluster
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            on_start()
            deadline = time.monotonic() + watch.timeout
            while not cluster._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = watch.watcher.queue.get(timeout=min(_POLL, remaining))
                except queue.Empty:
                    if self._client_gone():
                        break
                    continue
                if item is None:
                    break
                kind, obj = item
                line = json.dumps(watch.transform(kind, obj)).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            cluster._store.unwatch(watch.watcher)


class LocalCluster:
    """An embedded Kubernetes API server on loopback, with simulated controllers.

    Usable as a context manager. Nothing is printed; `run()` is the command that prints.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ready_delay: float = 2.0,
        request_log: Path | None = None,
        controllers: bool = True,
        clock: Callable[[], float] = time.time,  # injected by tests
    ) -> None:
        self._host = host
        self._port = port
        self.ready_delay = ready_delay
        self._want_controllers = controllers
        self._clock = clock
        self.faults = faults.FaultSet()
        self._log_sink = requestlog.RequestLog(path=Path(request_log) if request_log else None)
        self._store = store.Store(clock=clock)
        self._api = api.Api(data=self._store, server_address=lambda: f"{self._host}:{self.port}",
                            clock=clock, unavailable=self.faults.unavailable)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._controllers: Any = None
        self._controllers_stop = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._started = False
        self._stopped = False

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        """Serve on the address (port 0 picks a free one); returns once requests are answered."""
        if self._started:
            return self
        self._log_sink.open()
        handler = type("Handler", (_Handler,), {"cluster": self})
        server_class = _Server6 if ":" in self._host else _Server
        self._server = server_class((self._host, self._port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="localcluster-http", daemon=True)
        self._thread.start()
        self._started = True
        if self._want_controllers:
            from reconciler.localcluster import controllers  # imports kubernetes: only if asked

            self._controllers = controllers.for_url(self.url, token=kubeconfig.TOKEN,
                                                    ready_delay=self.ready_delay,
                                                    stop=self._controllers_stop)
            self._controllers.start()
        return self

    def stop(self) -> None:
        """Stop controllers, watches and the server; join threads. Safe to call twice."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._controllers_stop.set()
        if self._controllers is not None:
            self._controllers.stop()
        self._stopping.set()
        self._store.close_watches()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._thread.join(JOIN_TIMEOUT)
        with self._conn_lock:
            connections = dict(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        self._server.server_close()
        self._log_sink.close()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        self.stop()

    # ---- what callers use ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """The bound host."""
        return self._host

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[requestlog.RequestRecord]:
        """A snapshot of every request served so far."""
        return self._log_sink.snapshot()

    @property
    def store(self) -> store.Store:
        """The object store (for tests that look behind the API)."""
        return self._store

    def write_kubeconfig(self, path: Path | str, *, context: str = "local") -> Path:
        """Write a kubeconfig for this cluster (token user, context set as current)."""
        return kubeconfig.write(Path(path), server=self.url, context=context)

    # ---- internals used by the handler -----------------------------------------------------

    def _track(self, conn: socket.socket, thread: threading.Thread, *, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections[conn] = thread
            else:
                self._connections.pop(conn, None)

    def _log(self, arrived: float, target: api.Target, request: api.Request, status: int) -> None:
        self._log_sink.append(requestlog.RequestRecord(
            time=arrived,
            handled=time.time(),
            verb=target.verb,
            patch_type=target.patch_type,
            path=request.path,
            kind=target.kind,
            namespace=target.namespace,
            name=target.name,
            intent_id=target.intent_id,
            dry_run=target.dry_run,
            status=status,
        ))


def run(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    kubeconfig_out: Path | None = None,
    request_log: Path | None = None,
    ready_delay: float = 2.0,
    out: IO[str] = sys.stdout,
    stop: threading.Event | None = None,  # injected by tests; SIGINT/SIGTERM set it otherwise
) -> int:
    """The `reconciler local-cluster` command: serve until interrupted, then stop cleanly."""
    stop = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    temp_dir: tempfile.TemporaryDirectory[str] | None = None
    cluster = LocalCluster(host=host, port=port, ready_delay=ready_delay,
                           request_log=request_log)
    try:
        cluster.start()
        if kubeconfig_out is None:
            temp_dir = tempfile.TemporaryDirectory(prefix="localcluster-")
            kubeconfig_out = Path(temp_dir.name) / "kubeconfig"
        path = cluster.write_kubeconfig(kubeconfig_out)
        print(f"local cluster serving at {cluster.url}", file=out)
        print(f"kubeconfig: {path}", file=out)
        if request_log is not None:
            print(f"request log: {request_log}", file=out)
        print(f"try: kubectl --kubeconfig {path} get ns", file=out)
        print("press Ctrl-C to stop", file=out, flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping", file=out, flush=True)
        return 0
    finally:
        cluster.stop()
        if temp_dir is not None:
            temp_dir.cleanup()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
