"""HTTP plumbing of the simulator: a threading server on loopback that hands each
request to :class:`SimulatedClashApi` and writes its answer."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from clash_pipeline.simulator.admin import handle_admin
from clash_pipeline.simulator.responses import Response, error
from clash_pipeline.simulator.routes import path_kind

if TYPE_CHECKING:
    from clash_pipeline.simulator.server import SimulatedClashApi

API_PREFIX = "/v1"


def api_parts(path: str) -> list[str]:
    """The segments of a URL path after /v1."""
    return [p for p in urlsplit(path).path[len(API_PREFIX) :].split("/") if p]


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: SimulatedClashApi) -> None:
        self.api = api
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def close_all_connections(self) -> None:
        """Hang up on every client (keep-alive connections would keep threads alive)."""
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: a client that hangs up mid-answer is a normal event here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SimulatedClashApi/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    wbufsize = 1 << 16  # headers and body leave in one write (no Nagle/delayed-ACK stall)
    server: HttpServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        self.server.track(self.connection, add=False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """No per-request logging."""

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        api = self.server.api
        if self.path.startswith("/_sim/") or self.path == "/_sim":
            self._write(handle_admin(api, method, self.path, payload))
            return
        if (
            self.path == API_PREFIX
            or self.path.startswith(API_PREFIX + "/")
            or (self.path.startswith(API_PREFIX + "?"))
        ):
            response = api.handle_api(method, self.path, self.headers)
        else:
            response = error(404, f"Unknown path {urlsplit(self.path).path}")
        if response is None:  # the server is stopping during a hang: hang up
            self.close_connection = True
            return
        api.stats.record(path_kind(api_parts(self.path)), response.status)
        self._write(response)

    def _write(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", response.cache_control)
            self.send_header(
                "X-Sim-Time", self.server.api.clock.now().strftime("%Y%m%dT%H%M%S.000Z")
            )
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:  # the client went away (e.g. it timed out during a hang)
            self.close_connection = True
