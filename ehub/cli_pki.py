"""``ehub pki …``: the development PKI under ``$EHUB_HOME/pki``.

- ``init``          — create the PKI if absent (root, seal-issuing CA, seal, TSA,
  CRLs, service URL) and describe it;
- ``show``          — describe an existing PKI;
- ``serve``         — serve its CRLs and RFC 3161 TSA on loopback, in the foreground;
- ``revoke SERIAL`` — put a seal certificate (hex serial, as ``show`` prints it) on the CRL.

Only public data is printed: subjects, serials, validity, URLs, file names;
never a key or the passphrase.
"""

from __future__ import annotations

from pathlib import Path

import click
from cryptography import x509
from rich.console import Console
from rich.markup import escape

from ehub.config import Settings
from ehub.errors import ConfigError
from signing.pki import DevPKI, ensure_dev_pki
from signing.pki_revocation import list_seal_certificates, revoke_seal_certificate

console = Console(width=None if Console().is_terminal else 140)

_REASONS = [r.name for r in x509.ReasonFlags if r.name not in ("remove_from_crl",)]


def _pki_dir() -> Path:
    return Settings.from_env().home / "pki"


def _existing() -> DevPKI:
    directory = _pki_dir()
    if not (directory / "root.pem").exists():
        raise ConfigError(f"no development PKI in {directory}; create it with `ehub pki init`")
    return ensure_dev_pki(directory)


def _when(cert: x509.Certificate) -> str:
    return f"{cert.not_valid_before_utc:%Y-%m-%d} → {cert.not_valid_after_utc:%Y-%m-%d}"


def _crl_urls(cert: x509.Certificate) -> str:
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return "—"
    return " ".join(str(n.value) for p in points for n in (p.full_name or ()))


def _describe(pki: DevPKI) -> None:
    console.print(f"[bold]development PKI in {escape(str(pki.directory))}[/]")
    for role, cert in (
        ("root CA (trust anchor)", pki.root_cert()),
        ("seal-issuing CA", pki.intermediate_cert()),
        ("timestamp authority", pki.tsa_cert()),
    ):
        _entry(
            role, cert.subject.rfc4514_string(), cert.serial_number, _when(cert), _crl_urls(cert)
        )
    revoked = _revoked_serials(pki)
    for seal in list_seal_certificates(pki):
        role = f"seal {seal.path.name}" + (" [red]REVOKED[/]" if seal.serial in revoked else "")
        when = f"{seal.not_before:%Y-%m-%d} → {seal.not_after:%Y-%m-%d}"
        _entry(role, seal.subject, seal.serial, when, " ".join(seal.crl_urls) or "—")
    urls = pki.service_urls()
    console.print(f"trust anchor file: {escape(str(pki.root_cert_path))}")
    console.print(f"CRLs: {urls.root_crl}  {urls.intermediate_crl}")
    console.print(f"TSA (RFC 3161): {urls.tsa}   (served by `ehub pki serve`)")


def _entry(role: str, subject: str, serial: int, when: str, crl: str) -> None:
    console.print(f"[bold]{role}[/]")
    console.print(f"  subject: {escape(subject)}", highlight=False)
    console.print(f"  serial:  {serial:X}", highlight=False)
    console.print(f"  valid:   {when} (UTC)", highlight=False)
    console.print(f"  CRL:     {crl}", highlight=False)


def _revoked_serials(pki: DevPKI) -> set[int]:
    if not pki.intermediate_crl_path.exists():
        return set()
    crl = x509.load_der_x509_crl(pki.intermediate_crl_path.read_bytes())
    return {entry.serial_number for entry in crl}


@click.group()
def pki() -> None:
    """The development PKI: CAs, seal and TSA certificates, CRLs."""


@pki.command()
@click.option(
    "--service-url",
    help="Base URL for CRLs and TSA, fixed at creation (default: http://127.0.0.1:<free port>).",
)
def init(service_url: str | None) -> None:
    """Create the development PKI if absent, then describe it."""
    directory = _pki_dir()
    existed = (directory / "root.pem").exists()
    dev_pki = ensure_dev_pki(directory, service_url=service_url)
    console.print("reusing the existing PKI" if existed else "created a new development PKI")
    _describe(dev_pki)


@pki.command()
def show() -> None:
    """Describe the development PKI (public data only)."""
    _describe(_existing())


@pki.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help="Default: the port of the PKI's stored service URL.")
def serve(host: str, port: int | None) -> None:
    """Serve the CRLs and the RFC 3161 TSA in the foreground (Ctrl-C stops)."""
    from signing.pki_services import serve_pki

    server = serve_pki(_existing(), host, port)
    console.print(f"serving CRLs at {server.url}/crl/ and the TSA at {server.tsa_url}")
    try:
        server.wait()
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        server.close()


@pki.command()
@click.argument("serial")
@click.option("--reason", type=click.Choice(_REASONS), default="unspecified", show_default=True)
def revoke(serial: str, reason: str) -> None:
    """Revoke the seal certificate with hex serial SERIAL (as `ehub pki show` prints it)."""
    try:
        number = int(serial.replace(":", ""), 16)
    except ValueError as exc:
        raise click.BadParameter(f"{serial!r} is not a hexadecimal serial") from exc
    done = revoke_seal_certificate(_existing(), number, reason=x509.ReasonFlags[reason])
    console.print(
        f"revoked {done.serial:X} at {done.revoked_at:%Y-%m-%d %H:%M:%S} UTC "
        f"({done.reason}); CRL re-signed: {done.crl_path}"
    )
