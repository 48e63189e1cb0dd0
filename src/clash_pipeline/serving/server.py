"""Run the API app with uvicorn in a background thread (tests, benchmark, notebooks).

It is served as ``clash-pipeline api`` serves it: with the protocol of
:mod:`clash_pipeline.serving.protocol` (limits, JSON errors) unless ``http=`` says otherwise.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from clash_pipeline.serving.protocol import uvicorn_options


class BackgroundServer:
    """``with BackgroundServer(app) as server: server.base_url`` on a free loopback port."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.host, self.port = host, port
        config.setdefault("log_level", "warning")
        config.setdefault("access_log", False)
        config = {**uvicorn_options(), **config}
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **config))
        self._thread = threading.Thread(target=self._server.run, name="api-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start (see its log)")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
