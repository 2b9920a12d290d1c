"""A TLS listener with client authentication in front of the embedded tansu broker.
Test support only; never imported by the hub.

Why: the production broker (Apache Kafka, docker-compose.yml) serves the offices on
an SSL listener that requires a client certificate. tansu 0.6.0's own TLS options do
not start here, so the tests put this terminator in front of it: it accepts TLS
(TLS 1.2+, the server certificate of the dev TLS CA) and, when ``client_ca`` is
given, refuses every handshake without a client certificate issued by that CA —
as ``ssl.client.auth=required`` does. Decrypted bytes go to tansu unchanged, both
ways. The broker must advertise this proxy's address (``--advertised-listener-url``
= the proxy, ``--listener-url`` = tansu's own port) so clients come back through it.

``handshakes`` and ``refused`` count completed and failed TLS handshakes, so a
test can show its clients really went through TLS and that bad ones were turned away.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path


def server_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    # No TLS 1.3 session tickets: a ticket arriving after the handshake reads, to
    # kafka-python, as a response nobody asked for ("Socket EVENT_READ without
    # in-flight-requests"), and it drops the connection (seen once in CI).
    ctx.num_tickets = 0
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(client_ca))
        # client_ca may be an issuing CA rather than a root (the dev TLS CA), as the
        # platform simulators accept it
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


class KafkaTlsProxy:
    """Listens on ``port`` (TLS) and relays each connection to ``upstream`` (plaintext)."""

    def __init__(self, upstream: tuple[str, int], port: int, context: ssl.SSLContext) -> None:
        self.upstream, self.port, self._ctx = upstream, port, context
        self.handshakes = self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="kafka-tls-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> KafkaTlsProxy:
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError(f"the TLS proxy did not listen on {self.port}")
        return self

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        # The handshake is done by hand (not start_server(ssl=...)) to count refusals.
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.start_tls(self._ctx)
        except (ssl.SSLError, ConnectionError, OSError):
            self.refused += 1
            writer.close()
            return
        self.handshakes += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
