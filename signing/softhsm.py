"""Development helper: a SoftHSM2 token holding a seal key, provisioned on demand.

:func:`ensure_softhsm_token` builds, in one directory (never in the repo):

- ``softhsm2.conf`` (``directories.tokendir`` = ``<dir>/tokens``, file backend);
- ``so.pin`` and ``user.pin``, random, mode 0600, generated on first run;
- a token labelled ``token_label`` with an EC P-256 key pair generated *on*
  the token (private key CKA_SENSITIVE, not CKA_EXTRACTABLE, sign only);
- a seal certificate for that key, issued by the dev PKI's intermediate CA,
  stored on the token (same label as the key) together with the intermediate
  and root certificates, and as PEM in ``<dir>/seal-cert.pem``.

Running it again reuses everything (a seal certificate no longer issued by
the PKI's current intermediate CA is re-issued for the same key). If the
first run is interrupted between ``softhsm2-util`` and the PIN change, the
token is unusable: delete ``<dir>/tokens`` and run again.

SoftHSM2 reads ``$SOFTHSM2_CONF`` only when the PKCS#11 module is
initialised, so this function sets it for the
process *before* loading the module; if the module was already initialised
with another configuration it is re-initialised, which closes every PKCS#11
session of this process. Keep one token directory per process.

The token is created with ``softhsm2-util`` using throw-away PINs (they are
visible on its command line for a moment) which are immediately replaced
in-process (C_SetPIN, C_InitPIN) by the stored ones.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pkcs11
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11_errors
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.x509 import decode_x509_certificate

from signing import pki as dev_pki
from signing import pki_build
from signing.errors import KeyAccessError, SigningError
from signing.pkcs11_token import Pkcs11KeyRef, default_module, find_token_by_label, load_module

CONF_FILE = "softhsm2.conf"
TOKENS_DIR = "tokens"
SO_PIN_FILE = "so.pin"
USER_PIN_FILE = "user.pin"
CERT_FILE = "seal-cert.pem"
CHAIN_FILE = "seal-chain.pem"

DEFAULT_TOKEN_LABEL = "ehub-dev-seal"
DEFAULT_KEY_LABEL = "ehub-seal"
_INTERMEDIATE_LABEL = "ehub-issuing-ca"
_ROOT_LABEL = "ehub-root-ca"
_SEAL_DAYS = 730


@dataclass(frozen=True)
class SoftHsmToken:
    """A provisioned SoftHSM2 token and where its files live."""

    directory: Path
    conf_path: Path
    """softhsm2.conf; ``$SOFTHSM2_CONF`` must point here before the module loads."""
    module_path: Path
    token_label: str
    key_label: str
    """Label of the private key, public key and seal certificate on the token."""
    key_id: bytes
    certificate_path: Path
    """Seal certificate (PEM), also stored on the token."""
    chain_path: Path
    """Intermediate and root CA certificates (PEM)."""
    user_pin_path: Path
    user_pin: str = field(repr=False)

    def key_ref(self) -> Pkcs11KeyRef:
        """Reference for :class:`signing.pkcs11_sealer.Pkcs11Sealer`."""
        return Pkcs11KeyRef(
            token=self.token_label,
            object=self.key_label,
            module_path=self.module_path,
            pin_source=self.user_pin_path,
        )

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_path.read_bytes())


def ensure_softhsm_token(
    directory: Path,
    pki: dev_pki.DevPKI,
    *,
    token_label: str = DEFAULT_TOKEN_LABEL,
    key_label: str = DEFAULT_KEY_LABEL,
    organization: str = "山东省电子证照测试发证单位",
    uscc: str = dev_pki.DEV_DEPARTMENT_USCC,
    seal_name: str = "电子证照测试专用章（HSM）",
    module: Path | None = None,
) -> SoftHsmToken:
    """Provision (or reuse) the dev token in ``directory``; see the module doc.

    Raises :class:`KeyAccessError` when the stored PINs do not open an
    existing token or ``softhsm2-util`` / the module is missing.
    """
    directory = Path(directory).resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    module = module or default_module()
    with _locked(directory):
        conf = _ensure_conf(directory)
        os.environ["SOFTHSM2_CONF"] = str(conf)
        so_pin = _ensure_pin(directory / SO_PIN_FILE)
        user_pin = _ensure_pin(directory / USER_PIN_FILE)
        lib = load_module(module)
        token = find_token_by_label(lib, token_label)
        if token is None:
            tmp_so = _init_token(conf, token_label)
            lib = load_module(module, refresh=True)
            token = find_token_by_label(lib, token_label)
            if token is None:
                raise KeyAccessError(f"token {token_label!r} not visible after initialisation")
            _set_pins(token, tmp_so, so_pin, user_pin)
        try:
            session = token.open(rw=True, user_pin=user_pin)
        except p11_errors.PKCS11Error as exc:
            raise KeyAccessError(
                f"cannot log in to token {token_label!r} with the PIN in {directory / USER_PIN_FILE}"
                f" ({type(exc).__name__})"
            ) from exc
        with session:
            key_id, spki = _ensure_key_pair(session, key_label)
            cert = _ensure_certificate(
                session, pki, key_label, key_id, spki, organization, uscc, seal_name
            )
            _ensure_ca_certificates(session, pki)
        cert_path, chain_path = directory / CERT_FILE, directory / CHAIN_FILE
        _write_if_changed(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        chain = pki.intermediate_cert_path.read_bytes() + pki.root_cert_path.read_bytes()
        _write_if_changed(chain_path, chain, 0o644)
    return SoftHsmToken(
        directory=directory,
        conf_path=conf,
        module_path=module,
        token_label=token_label,
        key_label=key_label,
        key_id=key_id,
        certificate_path=cert_path,
        chain_path=chain_path,
        user_pin_path=directory / USER_PIN_FILE,
        user_pin=user_pin,
    )


def activate(directory: Path) -> bool:
    """Point ``$SOFTHSM2_CONF`` at the token directory ``directory`` if it has one.

    For a process that only seals (no provisioning): call it before the first
    PKCS#11 use. Returns whether a configuration was found.
    """
    conf = Path(directory).resolve() / CONF_FILE
    if not conf.is_file():
        return False
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return True


def issue_certificate_for_key(
    pki: dev_pki.DevPKI,
    public_key: ec.EllipticCurvePublicKey,
    *,
    organization: str,
    uscc: str,
    seal_name: str,
) -> x509.Certificate:
    """Have the dev intermediate CA certify ``public_key`` as a seal key.

    Same profile as :func:`signing.pki.issue_seal_certificate` (digitalSignature
    + nonRepudiation, organizationIdentifier ``NTRCN-<USCC>``), for a key that
    was generated elsewhere (here: on the token).
    """
    if not seal_name or not organization:
        raise SigningError("a seal certificate needs a department name and a seal name")
    issuer_cert = pki.intermediate_cert()
    issuer_key = dev_pki._load_key(pki.intermediate_key_path, pki.passphrase)
    subject = pki_build.name(
        (NameOID.COUNTRY_NAME, "CN"),
        (NameOID.ORGANIZATION_NAME, organization),
        (NameOID.ORGANIZATION_IDENTIFIER, f"NTRCN-{uscc}"),
        (NameOID.COMMON_NAME, seal_name),
    )
    return pki_build.end_entity_cert(
        subject,
        public_key,
        issuer_cert=issuer_cert,
        issuer_key=issuer_key,
        days=_SEAL_DAYS,
        crl_url=pki.services.intermediate_crl if pki.services else None,
    )


# --- internals -------------------------------------------------------------


# The dev PKI's lock (a ``.lock`` file in the directory) and atomic private write.
_locked = dev_pki._locked
_write_private = dev_pki._write_atomic


def _write_if_changed(path: Path, data: bytes, mode: int) -> None:
    if not path.exists() or path.read_bytes() != data:
        _write_private(path, data, mode)


def _ensure_conf(directory: Path) -> Path:
    tokens = directory / TOKENS_DIR
    tokens.mkdir(mode=0o700, exist_ok=True)
    conf = directory / CONF_FILE
    text = (
        "# Generated by signing.softhsm for development; not for production keys.\n"
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    _write_if_changed(conf, text.encode("utf-8"), 0o600)
    return conf


def _ensure_pin(path: Path) -> str:
    if path.exists():
        pin = path.read_text(encoding="utf-8").strip()
        if not pin:
            raise KeyAccessError(f"PIN file {path} is empty")
        return pin
    pin = secrets.token_urlsafe(24)
    _write_private(path, pin.encode("utf-8") + b"\n", 0o600)
    return pin


def _init_token(conf: Path, label: str) -> str:
    """Initialise a token on a free slot; return its throw-away SO PIN."""
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise KeyAccessError("softhsm2-util not found (install the softhsm2 package)")
    # Throw-away PINs on the command line; the real ones are set in-process.
    tmp_so, tmp_user = secrets.token_hex(8), secrets.token_hex(8)
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    run = subprocess.run(
        [tool, "--init-token", "--free", "--label", label, "--so-pin", tmp_so, "--pin", tmp_user],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise KeyAccessError(f"softhsm2-util could not initialise token {label!r}: {run.stderr}")
    return tmp_so


def _set_pins(token: pkcs11.Token, tmp_so: str, so_pin: str, user_pin: str) -> None:
    with token.open(rw=True, so_pin=tmp_so) as session:
        session.set_pin(tmp_so, so_pin)
        session.init_pin(user_pin)


def _find_one(session: pkcs11.Session, attrs: dict[Attribute, object]) -> pkcs11.Object | None:
    found = list(session.get_objects(attrs))
    if len(found) > 1:
        raise KeyAccessError(f"more than one token object matches {attrs}")
    return found[0] if found else None


def _ensure_key_pair(session: pkcs11.Session, label: str) -> tuple[bytes, bytes]:
    """Return (CKA_ID, SubjectPublicKeyInfo DER) of the key pair, generating it if absent."""
    priv = _find_one(session, {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
    pub = _find_one(session, {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: label})
    if priv is None:
        if pub is not None:
            pub.destroy()  # orphan of an interrupted run
        key_id = secrets.token_bytes(8)
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        pub, priv = params.generate_keypair(
            id=key_id,
            label=label,
            store=True,
            # A seal key signs and nothing else (python-pkcs11's EC default
            # would also allow ECDH key derivation).
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            public_template={Attribute.VERIFY: True, Attribute.TOKEN: True},
            private_template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
                Attribute.DERIVE: False,
                Attribute.DECRYPT: False,
                Attribute.UNWRAP: False,
            },
        )
    elif pub is None:
        raise KeyAccessError(f"token holds private key {label!r} without its public key")
    key_id = bytes(priv[Attribute.ID])
    assert isinstance(pub, pkcs11.PublicKey)
    return key_id, encode_ec_public_key(pub)


def _ensure_certificate(
    session: pkcs11.Session,
    pki: dev_pki.DevPKI,
    label: str,
    key_id: bytes,
    spki: bytes,
    organization: str,
    uscc: str,
    seal_name: str,
) -> x509.Certificate:
    query = {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label}
    stored = _find_one(session, query)
    if stored is not None:
        cert = x509.load_der_x509_certificate(bytes(stored[Attribute.VALUE]))
        ours = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            cert.verify_directly_issued_by(pki.intermediate_cert())
            issued_here = True
        except (ValueError, TypeError, InvalidSignature):
            issued_here = False  # the dev PKI was rebuilt since
        if ours == spki and issued_here:
            return cert
        stored.destroy()  # stale: key regenerated or PKI replaced
    public_key = serialization.load_der_public_key(spki)
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise KeyAccessError(f"token key {label!r} is not an EC key")
    cert = issue_certificate_for_key(
        pki, public_key, organization=organization, uscc=uscc, seal_name=seal_name
    )
    _store_certificate(session, cert, label, key_id)
    return cert


def _ensure_ca_certificates(session: pkcs11.Session, pki: dev_pki.DevPKI) -> None:
    for label, cert in (
        (_INTERMEDIATE_LABEL, pki.intermediate_cert()),
        (_ROOT_LABEL, pki.root_cert()),
    ):
        query = {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label}
        stored = _find_one(session, query)
        der = cert.public_bytes(serialization.Encoding.DER)
        if stored is not None:
            if bytes(stored[Attribute.VALUE]) == der:
                continue
            stored.destroy()
        _store_certificate(session, cert, label, None)


def _store_certificate(
    session: pkcs11.Session, cert: x509.Certificate, label: str, key_id: bytes | None
) -> None:
    der = cert.public_bytes(serialization.Encoding.DER)
    attrs = decode_x509_certificate(der)
    attrs.update({Attribute.TOKEN: True, Attribute.LABEL: label, Attribute.PRIVATE: False})
    if key_id is not None:
        attrs[Attribute.ID] = key_id
    session.create_object(attrs)


# --- inspection (ehub hsm show) ---------------------------------------------


@dataclass(frozen=True)
class TokenObject:
    """One object on the token, as shown by ``ehub hsm show``."""

    kind: str
    label: str
    key_id: str
    sensitive: bool | None = None
    extractable: bool | None = None
    always_sensitive: bool | None = None
    never_extractable: bool | None = None


def describe_token(
    directory: Path,
    *,
    token_label: str = DEFAULT_TOKEN_LABEL,
    module: Path | None = None,
) -> tuple[dict[str, str], list[TokenObject]]:
    """Token information and objects of an already provisioned ``directory``.

    Provisions nothing; raises :class:`KeyAccessError` if there is no token.
    Opens (and closes) its own logged-in session, which logs out any other
    session of this process on the same token.
    """
    directory = Path(directory).resolve()
    conf, pin_path = directory / CONF_FILE, directory / USER_PIN_FILE
    if not conf.exists() or not pin_path.exists():
        raise KeyAccessError(f"no SoftHSM2 token provisioned in {directory} (run `ehub hsm init`)")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    module = module or default_module()
    p11_token = find_token_by_label(load_module(module), token_label)
    if p11_token is None:
        raise KeyAccessError(f"no token labelled {token_label!r} in {directory}")
    info = {
        "label": p11_token.label,
        "serial": p11_token.serial.decode("ascii", "replace").strip(),
        "manufacturer": p11_token.manufacturer_id,
        "model": p11_token.model,
        "module": str(module),
        "config": str(conf),
    }
    kinds = {
        ObjectClass.PRIVATE_KEY: "private key",
        ObjectClass.PUBLIC_KEY: "public key",
        ObjectClass.CERTIFICATE: "certificate",
    }
    objects: list[TokenObject] = []
    pin = _ensure_pin(pin_path)
    try:
        session = p11_token.open(user_pin=pin)
    except p11_errors.PKCS11Error as exc:
        raise KeyAccessError(
            f"cannot log in to token {token_label!r} with the PIN in {pin_path}"
        ) from exc
    with session:
        for obj in session.get_objects({}):
            cls = obj[Attribute.CLASS]
            label, key_id = str(obj[Attribute.LABEL]), bytes(obj[Attribute.ID]).hex()
            if cls != ObjectClass.PRIVATE_KEY:
                objects.append(TokenObject(kinds.get(cls, str(cls)), label, key_id))
                continue
            flags = obj.get_attributes(
                [
                    Attribute.SENSITIVE,
                    Attribute.EXTRACTABLE,
                    Attribute.ALWAYS_SENSITIVE,
                    Attribute.NEVER_EXTRACTABLE,
                ]
            )
            objects.append(
                TokenObject(
                    kind=kinds[cls],
                    label=label,
                    key_id=key_id,
                    sensitive=bool(flags[Attribute.SENSITIVE]),
                    extractable=bool(flags[Attribute.EXTRACTABLE]),
                    always_sensitive=bool(flags[Attribute.ALWAYS_SENSITIVE]),
                    never_extractable=bool(flags[Attribute.NEVER_EXTRACTABLE]),
                )
            )
    return info, objects
