"""A loopback TCP proxy in front of the embedded tansu broker that lets Debian's kcat
(librdkafka 2.0) talk to it. Test support only; never imported by the hub.

Why: librdkafka opens every connection with ApiVersions v3 (the flexible,
tagged-field version). tansu 0.6.0 answers that version in a shape librdkafka
misparses ("ApiVersionRequest failed: Local: Read underflow"), and librdkafka
2.0 no longer honours ``api.version.request=false``, so kcat cannot connect.

What the proxy touches — version negotiation only:

- A request frame whose API key is ApiVersions (18) with version >= 3 is not
  forwarded. The proxy answers it itself, as a broker that does not support
  that version must (KIP-511): a version-0 response with error
  UNSUPPORTED_VERSION (35) and one entry, ApiVersions 0..2. librdkafka then
  retries ApiVersions at v2, which goes to tansu unchanged, and tansu's own
  answer (the real list of APIs and versions it supports) goes back unchanged.
- Every other byte in both directions — metadata, fetches, offsets, produce —
  is forwarded unchanged. Records read through the proxy are tansu's bytes
  decoded by the client's own code.

The proxy cannot rewrite metadata: the broker must advertise the proxy's
address (start tansu with ``--advertised-listener-url`` = the proxy's address
and ``--listener-url`` = its own port), so the client's later connections come
back through the proxy too.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

API_VERSIONS = 18
UNSUPPORTED_VERSION = 35
#: Highest ApiVersions version passed to the broker (the non-flexible ones tansu
#: answers in a shape librdkafka reads).
MAX_FORWARDED_VERSION = 2


def unsupported_version_response(correlation_id: int) -> bytes:
    """ApiVersions v0 response: error 35 and ApiVersions' own supported range."""
    body = struct.pack(
        ">ihihhh", correlation_id, UNSUPPORTED_VERSION, 1, API_VERSIONS, 0, MAX_FORWARDED_VERSION
    )
    return struct.pack(">i", len(body)) + body


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class ApiVersionsProxy:
    """Listens on a loopback port and relays each client connection to ``upstream``."""

    def __init__(self, upstream: tuple[str, int], listen_port: int = 0) -> None:
        self.upstream = upstream
        self._server = socket.create_server(("127.0.0.1", listen_port))
        self.port = int(self._server.getsockname()[1])
        self.answered = 0
        """ApiVersions requests (v3+) the proxy answered itself."""
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="apiversions-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ApiVersionsProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._server.close()
        with self._lock:
            for s in self._sockets:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            write_lock = threading.Lock()
            threading.Thread(target=self._requests, args=(client, upstream, write_lock),
                             daemon=True).start()  # fmt: skip
            threading.Thread(target=self._responses, args=(upstream, client, write_lock),
                             daemon=True).start()  # fmt: skip

    def _requests(
        self, client: socket.socket, upstream: socket.socket, lock: threading.Lock
    ) -> None:
        """Client → broker, frame by frame; answers ApiVersions v3+ itself."""
        try:
            while True:
                head = _read_exact(client, 4)
                if head is None:
                    break
                (size,) = struct.unpack(">i", head)
                frame = _read_exact(client, size)
                if frame is None:
                    break
                key, version, correlation = struct.unpack(">hhi", frame[:8])
                if key == API_VERSIONS and version > MAX_FORWARDED_VERSION:
                    self.answered += 1
                    with lock:
                        client.sendall(unsupported_version_response(correlation))
                    continue
                upstream.sendall(head + frame)
        except OSError:
            pass
        finally:
            _close_both(client, upstream)

    @staticmethod
    def _responses(upstream: socket.socket, client: socket.socket, lock: threading.Lock) -> None:
        """Broker → client, unchanged, a whole frame at a time (so an answer of the
        proxy's own never lands inside one of the broker's)."""
        try:
            while True:
                head = _read_exact(upstream, 4)
                if head is None:
                    break
                frame = _read_exact(upstream, struct.unpack(">i", head)[0])
                if frame is None:
                    break
                with lock:
                    client.sendall(head + frame)
        except OSError:
            pass
        finally:
            _close_both(client, upstream)


def _close_both(a: socket.socket, b: socket.socket) -> None:
    for s in (a, b):
        with suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@contextmanager
def proxy(upstream: tuple[str, int], listen_port: int = 0) -> Iterator[ApiVersionsProxy]:
    p = ApiVersionsProxy(upstream, listen_port).start()
    try:
        yield p
    finally:
        p.close()
