"""TLS of the hub's connections to the government platforms and to a Kafka broker
(mutual TLS when asked).

:class:`ClientTls` names three PEM files: the CA bundle the platform's server
certificate must chain to, and the hub's client certificate and key that the
platform requires. :meth:`ClientTls.ssl_context` builds the ``ssl`` context that
``httpx`` takes as ``verify=`` (httpx 0.28 deprecates ``cert=``), and
:func:`httpx_kwargs` gives the keyword arguments for any httpx call to a
platform, so clients, health probes and admin calls all present the same
identity. :func:`kafka_kwargs` gives the same context to kafka-python clients
(``security_protocol="SSL"``): an office's consumer on the broker's TLS listener,
or the hub's publisher when its broker is not on a private network.

Files that are missing or unreadable raise :class:`ConfigError` (Terminal)
naming the setting; nothing here opens a connection or logs key material.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from ehub.errors import ConfigError


@dataclass(frozen=True)
class ClientTls:
    """Trust and identity of the hub on a platform link; every field a PEM path."""

    ca_bundle: str | None = None
    """CA certificates the platform's server certificate must chain to; ``None``:
    the public CAs httpx trusts by default (certifi)."""
    cert: str | None = None
    """The hub's client certificate (PEM, optionally followed by its chain), for
    platforms that require mutual TLS; ``None``: no client certificate."""
    key: str | None = None
    """Unencrypted private key of ``cert``; ``None`` when ``cert`` holds it."""
    setting: str = "EHUB_PLATFORM"
    """Prefix of the settings these came from, named in errors (``EHUB_BROKER``...)."""

    @classmethod
    def from_paths(
        cls,
        ca_bundle: str | None,
        cert: str | None,
        key: str | None,
        setting: str = "EHUB_PLATFORM",
    ) -> ClientTls | None:
        """A :class:`ClientTls`, or ``None`` when all three are empty (plain defaults)."""
        if not (ca_bundle or cert or key):
            return None
        return cls(ca_bundle or None, cert or None, key or None, setting)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: TLS >= 1.2, hostname checked, the client chain loaded."""
        if self.key and not self.cert:
            raise ConfigError(
                f"{self.setting}_CLIENT_KEY is set without {self.setting}_CLIENT_CERT"
            )
        cafile = self.ca_bundle
        if cafile is None:
            import certifi

            cafile = certifi.where()
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{self.setting}_CA_BUNDLE: cannot load CA certificates from {cafile} ({exc})"
            ) from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # The bundle may name an issuing CA rather than a root (the dev PKI's TLS CA):
        # accept it as the trust anchor, as Python 3.13's default context does.
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        if self.cert:
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"{self.setting}_CLIENT_CERT / {self.setting}_CLIENT_KEY: cannot load the "
                    f"client certificate {self.cert} with key {self.key or '(in the same file)'} "
                    f"({exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc})"
                ) from exc
        return ctx


def httpx_kwargs(tls: ClientTls | None) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client``/``httpx.get`` to reach a platform:
    ``{"verify": <ssl context>}``, or nothing for httpx's defaults."""
    if tls is None:
        return {}
    return {"verify": tls.ssl_context()}


def kafka_kwargs(tls: ClientTls | None) -> dict[str, Any]:
    """Keyword arguments for a kafka-python client (``KafkaConsumer``, ``KafkaProducer``,
    ``KafkaAdminClient``, ``KafkaClient``): TLS with :meth:`ClientTls.ssl_context`
    (server certificate and host name checked, the client certificate presented), or
    nothing for a plaintext listener."""
    if tls is None:
        return {}
    return {"security_protocol": "SSL", "ssl_context": tls.ssl_context()}
