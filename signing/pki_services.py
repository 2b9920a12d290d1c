"""The dev PKI's online services over HTTP on loopback: CRLs and an RFC 3161 TSA.

Routes (all under the PKI's base URL, see :class:`signing.pki_build.ServiceUrls`):

- ``GET /crl/root.crl`` and ``GET /crl/intermediate.crl`` — DER CRLs
  (``application/pkix-crl``), re-signed first when close to their nextUpdate;
- ``POST /tsa`` — an RFC 3161 ``TimeStampReq`` (``application/timestamp-query``)
  answered with a ``TimeStampResp`` (``application/timestamp-reply``) signed
  by the PKI's TSA certificate;
- ``GET /health`` — ``ok``.

:func:`serve_pki` starts a stdlib :class:`~http.server.ThreadingHTTPServer` in
a background thread and returns a :class:`PkiServer` handle (``.url``,
``.close()``, a context manager). Its :attr:`PkiServer.faults` let tests make
a service misbehave (drop the connection, answer 503, answer garbage).

The timestamp tokens are built with pyHanko's ``DummyTimeStamper`` used
server-side (a real RFC 3161 token: TSTInfo with the request's imprint and
nonce, CMS SignedData with ESS signing-certificate), so this is a development
TSA: no accurate clock source, no audit trail. Not for production.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

from signing import pki_build
from signing.errors import KeyAccessError, SealUnavailable, SigningError
from signing.pki import DevPKI, ensure_dev_pki
from signing.pki_build import CRL_DIR, INTERMEDIATE_CRL, LOOPBACK, ROOT_CRL, TSA_PATH
from signing.pki_revocation import refresh_crls

log = logging.getLogger(__name__)

TSA_QUERY = "application/timestamp-query"
TSA_REPLY = "application/timestamp-reply"
CRL_TYPE = "application/pkix-crl"
_MAX_QUERY = 64 * 1024


class Fault(StrEnum):
    """How a service misbehaves when a fault is set (tests only)."""

    DROP = "drop"
    """Close the connection without answering (the client sees a connection error)."""
    ERROR = "error"
    """Answer HTTP 503 Service Unavailable."""
    MALFORMED = "malformed"
    """Answer 200 with a body of the wrong type."""


@dataclass
class Faults:
    """Fault switches, read on every request (mutable on purpose)."""

    tsa: Fault | None = None
    crl: Fault | None = None


@dataclass
class _Counters:
    tsa: int = 0
    crl: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def bump(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


class PkiServer:
    """A running CRL + TSA server; stop it with :meth:`close` (or ``with``)."""

    def __init__(self, httpd: _Server, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        host, port = httpd.server_address[:2]
        self.port: int = int(port)
        self.url: str = f"http://{host!s}:{self.port}"
        """Base URL the server answers on."""
        self.faults: Faults = httpd.faults
        """Fault injection switches (tests)."""

    @property
    def tsa_url(self) -> str:
        return f"{self.url}{TSA_PATH}"

    @property
    def tsa_requests(self) -> int:
        """Timestamp requests answered with a token so far."""
        return self._httpd.counters.tsa

    @property
    def crl_requests(self) -> int:
        """CRLs served so far."""
        return self._httpd.counters.crl

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C raises KeyboardInterrupt here)."""
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def close(self) -> None:
        """Stop serving and release the port; idempotent."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=10)
        self._httpd.server_close()

    def __enter__(self) -> PkiServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def serve_pki(
    pki: DevPKI | Path,
    host: str = LOOPBACK,
    port: int | None = None,
    *,
    passphrase: str | None = None,
) -> PkiServer:
    """Serve the CRLs and the TSA of ``pki`` (a DevPKI or its directory).

    ``port=None`` uses the port of the PKI's stored base URL, which is the one
    written into its certificates; ``0`` picks a free port (then only the TSA
    is useful, at :attr:`PkiServer.tsa_url`). Raises :class:`SealUnavailable`
    when the port cannot be bound.
    """
    if not isinstance(pki, DevPKI):
        pki = ensure_dev_pki(Path(pki), passphrase=passphrase)
    if port is None:
        port = pki.service_urls().port
    timestamper = _timestamper(pki)
    try:
        httpd = _Server((host, port), _Handler)
    except OSError as exc:
        raise SealUnavailable(
            f"cannot serve the PKI services on {host}:{port}: {exc.strerror}"
        ) from exc
    httpd.pki = pki
    httpd.timestamper = timestamper
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="pki-services", daemon=True
    )
    thread.start()
    server = PkiServer(httpd, thread)
    log.info("PKI services (CRL, TSA) on %s for %s", server.url, pki.directory)
    return server


# --- internals -------------------------------------------------------------


def _timestamper(pki: DevPKI) -> DummyTimeStamper:
    try:
        key = serialization.load_pem_private_key(
            pki.tsa_key_path.read_bytes(), pki.passphrase.encode("utf-8")
        )
    except (OSError, ValueError, TypeError) as exc:
        raise KeyAccessError(f"cannot open the TSA key {pki.tsa_key_path}") from exc
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # in memory only, handed to the token builder
    )
    cert = asn1_x509.Certificate.load(pki.tsa_cert().public_bytes(serialization.Encoding.DER))
    return DummyTimeStamper(tsa_cert=cert, tsa_key=asn1_keys.PrivateKeyInfo.load(der))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    pki: DevPKI
    timestamper: DummyTimeStamper

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.faults = Faults()
        self.counters = _Counters()
        self.crl_lock = threading.Lock()
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, "text/plain", b"ok")
            return
        name = self.path.removeprefix(f"/{CRL_DIR}/")
        if name not in (ROOT_CRL, INTERMEDIATE_CRL):
            self._send(404, "text/plain", b"not found")
            return
        if self._faulty(self.server.faults.crl):
            return
        try:
            body = self._crl(name)
        except SigningError as exc:
            log.error("cannot serve CRL %s: %s", name, exc)
            self._send(500, "text/plain", b"CRL unavailable")
            return
        self.server.counters.bump("crl")
        self._send(200, CRL_TYPE, body)

    def do_POST(self) -> None:
        if self.path != TSA_PATH:
            self._send(404, "text/plain", b"not found")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > _MAX_QUERY:
            self._send(400, "text/plain", b"bad request length")
            return
        body = self.rfile.read(length)
        if self._faulty(self.server.faults.tsa):
            return
        if self.headers.get_content_type() != TSA_QUERY:
            self._send(415, "text/plain", f"expected {TSA_QUERY}".encode())
            return
        try:
            request = tsp.TimeStampReq.load(body)
            request.native  # parse fully: asn1crypto is lazy  # noqa: B018
            reply = self.server.timestamper.request_tsa_response(request)
        except (ValueError, TypeError, KeyError) as exc:
            log.info("rejected timestamp request: %s", exc)
            self._send(400, "text/plain", b"malformed timestamp request")
            return
        self.server.counters.bump("tsa")
        self._send(200, TSA_REPLY, reply.dump())

    def _crl(self, name: str) -> bytes:
        pki = self.server.pki
        path = pki.directory / CRL_DIR / name
        issuer = pki.root_cert() if name == ROOT_CRL else pki.intermediate_cert()
        with self.server.crl_lock:
            crl = pki_build.load_crl(path)
            if pki_build.crl_needs_refresh(crl, issuer, dt.datetime.now(dt.UTC)):
                refresh_crls(pki)
        return path.read_bytes()

    def _faulty(self, fault: Fault | None) -> bool:
        if fault is None:
            return False
        if fault is Fault.DROP:
            self.close_connection = True
            self.connection.close()
        elif fault is Fault.ERROR:
            self._send(503, "text/plain", b"service unavailable (injected fault)")
        else:
            self._send(200, "text/html", b"<html>not what you asked for</html>")
        return True

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
