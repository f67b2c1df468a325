"""The agent's HTTP servers: routes by path, each on a thread of its own. Used by
site/webhook.py and site/metrics.py through cli (`run --webhook-port`, `--metrics-port`).

A route says which methods it takes and the largest body it reads: a larger one is
answered 413 from its Content-Length, before a byte of it is read; a body without a
Content-Length (chunked) 411. A handler gets the whole request and returns a Response;
an exception in it is a 500 that names nothing of the request. Nothing here logs headers
or bodies: they may hold signatures and secrets.
"""

from __future__ import annotations

import dataclasses
import email.message
import http.server
import logging
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger("reconciler.site.endpoints")

READ_TIMEOUT = 10.0  # seconds a client may take to send its request


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: email.message.Message
    body: bytes
    client: str


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, (text + "\n").encode())


@dataclasses.dataclass(frozen=True)
class Route:
    handler: Callable[[Request], Response]
    methods: frozenset[str] = frozenset({"GET"})
    max_body: int = 0  # bytes; 0: a request with a body is refused (413)


class Server:
    """One ThreadingHTTPServer on `port` (0: a free one) serving `routes` by exact path."""

    def __init__(self, *, routes: Mapping[str, Route], port: int, host: str = "",
                 name: str = "http") -> None:
        self.routes = dict(routes)
        self.name = name
        handler = _handler_for(self)
        self._httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> Server:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=self.name,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(2.0)

    def answer(self, method: str, path: str, headers: email.message.Message,
               read: Callable[[int], bytes], client: str) -> Response:
        """The response to one request; `read(n)` reads n bytes of its body."""
        route = self.routes.get(path.split("?", 1)[0])
        if route is None:
            return Response.text(404, "not found")
        if method not in route.methods:
            return Response.text(405, f"method {method} not allowed")
        if headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            return Response.text(411, "a Content-Length is required")
        try:
            length = int(headers.get("Content-Length") or 0)
        except ValueError:
            return Response.text(400, "bad Content-Length")
        if length < 0:
            return Response.text(400, "bad Content-Length")
        if length > route.max_body:
            return Response.text(413, f"body larger than {route.max_body} bytes")
        body = read(length) if length else b""
        if len(body) != length:
            return Response.text(400, "body shorter than its Content-Length")
        try:
            return route.handler(Request(method=method, path=path.split("?", 1)[0],
                                         headers=headers, body=body, client=client))
        except Exception:
            log.exception("%s %s failed", method, path.split("?", 1)[0])
            return Response.text(500, "internal error")


def _handler_for(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT
        server_version = "intent-reconciler"
        sys_version = ""

        def _serve(self) -> None:
            response = server.answer(self.command, self.path, self.headers,
                                     self.rfile.read, self.client_address[0])
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            if response.status >= 400 and response.status != 401:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s: %s", server.name, format % args)

    return Handler
