"""Serve a simulator's ASGI app under uvicorn with a JSON ready line and a clean stop.

Prints ``{…ready, "url": "http://host:port"}`` once the socket accepts
connections (``--port 0`` picks a free port: read it from that line), and exits
with status 0 on SIGTERM / SIGINT.
"""

from __future__ import annotations

import json
import signal
import socket
from typing import Any


def serve(app: Any, host: str, port: int, log_level: str, ready: dict[str, Any]) -> int:
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                bound_host, bound_port = self.servers[0].sockets[0].getsockname()[:2]
                url = f"http://{bound_host}:{bound_port}"
                print(json.dumps({**ready, "url": url}), flush=True)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http="h11",
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to
    # the handler that was installed before it: make that one a no-op so a requested
    # stop exits with status 0 instead of dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    _Server(config).run()
    return 0
