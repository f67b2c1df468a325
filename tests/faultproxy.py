"""A fault-injecting HTTP proxy in front of any API server, for the end-to-end suite.

The embedded local cluster injects faults itself; a real kube-apiserver cannot. This proxy
takes plain HTTP on loopback, applies the same `localcluster.Fault`s (matched by verb,
patch type and path; not by kind), and forwards everything else to the real server over
TLS with its token, streaming watches through.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import sys
import threading
import urllib.parse
from http import server as http_server
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3

from reconciler.localcluster import faults, statuses

_NAMED = re.compile(r"^/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/[^/]+)?/[^/]+/[^/]+")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade",
                "proxy-authorization", "proxy-connection", "host", "content-length"}


class _QuietServer(http_server.ThreadingHTTPServer):
    """A client killed mid-request (the crash harness) resets its kept-alive connection:
    expected here, not worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _verb(method: str, path: str, query: dict[str, list[str]]) -> str:
    if method == "GET":
        if query.get("watch", [""])[0] in ("true", "1"):
            return "watch"
        return "get" if _NAMED.match(path) and not path.endswith("/namespaces") else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete"}.get(method, method.lower())


class FaultProxy:
    """Plain HTTP on 127.0.0.1 in front of `upstream` (https), with injectable faults."""

    def __init__(self, *, upstream: str, authorization: str | None = None,
                 ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, verify: bool = True) -> None:
        self.upstream = upstream.rstrip("/")
        self.authorization = authorization
        self.faults = faults.FaultSet()
        context = ssl.create_default_context(cafile=ca_file)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
        self._pool = urllib3.PoolManager(ssl_context=context, maxsize=16, retries=False)
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @classmethod
    def for_kubeconfig(cls, path: Path, *, context: str | None = None) -> FaultProxy:
        """A proxy that reaches the cluster of a kubeconfig as that kubeconfig's user does
        (token or client certificate), loaded by the official client's loader."""
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(path), context=context,
                                           client_configuration=config, persist_config=False)
        bearer = config.auth_settings().get("BearerToken") or {}
        return cls(upstream=config.host, authorization=bearer.get("value"),
                   ca_file=config.ssl_ca_cert, cert_file=config.cert_file,
                   key_file=config.key_file, verify=config.verify_ssl)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pool.clear()

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig that reaches the upstream server through this proxy."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "proxy", "user": {"token": "through-the-proxy"}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
        }
        path.write_text(json.dumps(config))
        return path

    def _handler(self) -> type[http_server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http_server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                content_type = self.headers.get("Content-Type", "")
                patch_type = "apply" if "apply-patch" in content_type else (
                    "merge" if "merge-patch" in content_type else None)
                fault = proxy.faults.match(verb=_verb(self.command, parts.path, query),
                                           patch_type=patch_type, path=parts.path, kind=None)
                if fault is not None and fault.latency:
                    threading.Event().wait(fault.latency)
                if fault is not None and fault.drop_connection:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault is not None and fault.status is not None:
                    error = statuses.for_code(code=fault.status, resource="", group="", name="")
                    payload = json.dumps(error.body()).encode()
                    self.send_response(error.code)
                    for name, value in error.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self._forward(body)

            def _forward(self, body: bytes | None) -> None:
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_HEADERS and k.lower() != "authorization"}
                if proxy.authorization:
                    headers["Authorization"] = proxy.authorization
                upstream = proxy._pool.request(self.command, proxy.upstream + self.path,
                                               body=body, headers=headers,
                                               preload_content=False, redirect=False)
                try:
                    self.send_response(upstream.status)
                    for name, value in upstream.headers.items():
                        if name.lower() not in _HOP_HEADERS:
                            self.send_header(name, value)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in upstream.stream(64 * 1024, decode_content=False):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    upstream.release_conn()

        return Handler
