"""Serve a simulator's ASGI app under uvicorn with a JSON ready line and a clean stop.

Prints ``{…ready, "url": "http://host:port"}`` once the socket accepts
connections (``--port 0`` picks a free port: read it from that line), and exits
with status 0 on SIGTERM / SIGINT.

TLS: :func:`add_tls_arguments` gives a simulator subcommand ``--tls-cert``,
``--tls-key`` and ``--tls-client-ca``; :func:`tls_from_args` turns them into a
:class:`ServerTls` for :func:`serve`, which then listens for HTTPS only (the
ready line's URL starts with ``https://``). With a client CA the server requires
a client certificate issued by it (mutual TLS), as the government platforms do.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerTls:
    """The server side of TLS."""

    certfile: str
    """Server certificate (PEM), optionally followed by its chain."""
    keyfile: str | None = None
    """Unencrypted private key (PEM); ``None`` when it is in ``certfile``."""
    client_ca: str | None = None
    """CA bundle (PEM) of accepted client certificates; when set, a client without
    a certificate issued by it is refused at the handshake."""


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tls-cert``, ``--tls-key``, ``--tls-client-ca`` on a simulator subcommand."""
    group = parser.add_argument_group("TLS (default: plain HTTP)")
    group.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    group.add_argument("--tls-key", metavar="PEM", help="its private key (unencrypted PEM)")
    group.add_argument(
        "--tls-client-ca",
        metavar="PEM",
        help="require client certificates issued by this CA bundle (mutual TLS)",
    )


def tls_from_args(args: argparse.Namespace) -> ServerTls | None:
    """The :class:`ServerTls` the flags of :func:`add_tls_arguments` ask for, if any."""
    cert, key, client_ca = args.tls_cert, args.tls_key, args.tls_client_ca
    if cert is None:
        if key is not None or client_ca is not None:
            print("error: --tls-key and --tls-client-ca need --tls-cert", file=sys.stderr)
            raise SystemExit(2)
        return None
    return ServerTls(certfile=cert, keyfile=key, client_ca=client_ca)


def serve(
    app: Any,
    host: str,
    port: int,
    log_level: str,
    ready: dict[str, Any],
    tls: ServerTls | None = None,
) -> int:
    import uvicorn

    scheme = "https" if tls is not None else "http"

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                bound_host, bound_port = self.servers[0].sockets[0].getsockname()[:2]
                url = f"{scheme}://{bound_host}:{bound_port}"
                print(json.dumps({**ready, "url": url}), flush=True)

    tls_options: dict[str, Any] = {}
    if tls is not None:
        tls_options = {
            "ssl_certfile": tls.certfile,
            "ssl_keyfile": tls.keyfile,
            "ssl_ca_certs": tls.client_ca,
            "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.client_ca else ssl.CERT_NONE,
            "ssl_context_factory": _hardened,
        }
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http="h11",
        lifespan="off",
        timeout_graceful_shutdown=5,
        **tls_options,
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to
    # the handler that was installed before it: make that one a no-op so a requested
    # stop exits with status 0 instead of dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    _Server(config).run()
    return 0


def _hardened(_config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    ctx = default()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # The client CA may be an issuing CA rather than a root (the dev PKI's TLS CA):
    # let it be the trust anchor so that only certificates it issued are accepted.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx
