"""Seal PDFs with a key held in a PKCS#11 token (HSM, smart card, SoftHSM2).

:class:`Pkcs11Sealer` implements the :class:`signing.pades.Sealer` protocol.
It is a :class:`signing.pades.PadesSealer` whose signer is pyHanko's
:class:`pyhanko.sign.pkcs11.PKCS11Signer` instead of a PKCS#12 key, and it
reuses ``PadesSealer.seal`` as is: same output (PAdES ETSI.CAdES.detached,
visible stamp in :data:`signing.render.SEAL_BOX`, not certifying) and same
levels (B-B, B-T, B-LT). The private key never leaves the token.

The same sealer signs the license XML: :meth:`Pkcs11Sealer.xml_material`
gives the (key, certificate, chain) that :func:`signing.xmlsig.sign_license_xml`
takes, the key being a :mod:`signing.pkcs11_xml` object that signs through
:meth:`Pkcs11Sealer.sign_raw` (same session, lock and mechanism as the PDFs).

A key is named by a :class:`Pkcs11KeyRef`, whose text form is an RFC 7512
URI, e.g. ``pkcs11:token=ehub-dev-seal;object=ehub-seal;type=private?module-path=
/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/var/hsm/user.pin``. The seal
stage can tell it from a PKCS#12 path with :func:`is_pkcs11_uri`, or let
:func:`sealer_for` pick the back end. Key references and module loading live
in :mod:`signing.pkcs11_token` (re-exported here).

Sessions: a sealer opens one session (and logs in once) lazily, on the first
seal or on :meth:`Pkcs11Sealer.open`, and reuses it for every signature until
:meth:`Pkcs11Sealer.close`; a lock serialises signatures, so a sealer may be
shared by the threads of one worker. A forked child does not reuse the
parent's session: it re-initialises the module and logs in on its own. PKCS#11
login state is per process and token: closing any logged-in session of the
token logs out all of them, so keep one sealer per token per process (a lost
session is reopened once, see :meth:`Pkcs11Sealer.seal`).

The PIN comes from the ``pin`` argument, ``$EHUB_PKCS11_PIN``, or the URI's
``pin-source`` file, in that order. It is never logged or put in a message.
For SoftHSM2, ``$SOFTHSM2_CONF`` must be set before the module is first
loaded; :func:`signing.softhsm.ensure_softhsm_token` does that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pkcs11
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from pkcs11 import exceptions as p11_errors
from pyhanko.sign import pkcs11 as pyhanko_pkcs11
from pyhanko.sign.pkcs11 import PKCS11Signer

from signing.errors import KeyAccessError, SealUnavailable, SigningError

# PadesSealer's seal() is reused; these private names are the coupling
# (kept in step with signing/pades.py).
from signing.pades import (
    _RESERVE_OVERHEAD,
    _TIMESTAMP_RESERVE,
    PadesLevel,
    PadesSealer,
    TrustRoot,
)
from signing.pkcs11_token import (
    PIN_ENV,
    Pkcs11KeyRef,
    default_module,
    find_token_by_label,
    is_pkcs11_uri,
    load_module,
    open_user_session,
    resolve_pin,
)
from signing.pkcs11_xml import TokenEcKey, TokenRsaKey, issuing_chain, token_key

__all__ = [
    "PIN_ENV",
    "Pkcs11KeyRef",
    "Pkcs11Sealer",
    "is_pkcs11_uri",
    "load_module",
    "open_user_session",
    "sealer_for",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_RAW_DIGESTS = frozenset({"sha256", "sha384", "sha512"})

_PIN_ERRORS = (
    p11_errors.PinIncorrect,
    p11_errors.PinInvalid,
    p11_errors.PinLenRange,
    p11_errors.PinLocked,
    p11_errors.PinExpired,
    p11_errors.UserPinNotInitialized,
)
# The session is gone (token reset, library re-initialised, logged out by
# another session of this process): reopening may help.
_LOST_SESSION_ERRORS = (
    p11_errors.SessionClosed,
    p11_errors.SessionHandleInvalid,
    p11_errors.UserNotLoggedIn,
    p11_errors.DeviceRemoved,
    p11_errors.TokenNotPresent,
    p11_errors.KeyHandleInvalid,
    p11_errors.ObjectHandleInvalid,
)


# --- the sealer ------------------------------------------------------------


class Pkcs11Sealer(PadesSealer):
    """PAdES sealer (B-B, B-T or B-LT) whose private key stays inside a PKCS#11 token.

    Produces exactly what :class:`PadesSealer` produces for the same
    ``visible``/``level``/``tsa_url``/``trust_roots``/``timeout`` (its
    :meth:`~PadesSealer.seal` is reused); only the signer differs.
    Construction only resolves the PIN and checks the level's arguments; the
    module is loaded and the session opened on :meth:`open` or the first
    :meth:`seal`. ``ca_chain`` adds issuing certificates not on the token.
    """

    def __init__(
        self,
        key_ref: Pkcs11KeyRef | str,
        pin: str | None = None,
        *,
        visible: bool = True,
        level: PadesLevel | str = PadesLevel.B_B,
        tsa_url: str | None = None,
        trust_roots: Sequence[TrustRoot] = (),
        timeout: float = 10.0,
        ca_chain: Sequence[asn1_x509.Certificate] = (),
        stamp_image: Path | str | None = None,
    ) -> None:
        # PadesSealer.__init__ is deliberately not called: it decrypts a
        # PKCS#12 bundle. Its _init_level sets the level, TSA and trust roots;
        # the other attributes seal() reads (_visible; _signer, _bytes_reserved,
        # _cert_id in _open_locked) are set here: keep them in step.
        self.key_ref = key_ref if isinstance(key_ref, Pkcs11KeyRef) else Pkcs11KeyRef.parse(key_ref)
        self._init_level(level, tsa_url, trust_roots, timeout, stamp_image)
        self._pin = resolve_pin(self.key_ref, pin)
        self._visible = visible
        self._ca_chain = tuple(ca_chain)
        self._lock = threading.RLock()
        self._session: pkcs11.Session | None = None
        self._p11_signer: PKCS11Signer | None = None
        # The signing key's handle for sign_raw, opened with that signer.
        self._raw_key: tuple[PKCS11Signer, pkcs11.SignMixin] | None = None
        self._bytes_reserved = 0
        self._cert_id = ""
        self._seal_name = ""
        self._opened_in = 0
        self._pin_refused: KeyAccessError | None = None
        self.session_opens = 0
        """How many PKCS#11 sessions (each with one login) this sealer opened."""

    def __repr__(self) -> str:
        return f"Pkcs11Sealer({self.key_ref.token!r}/{self.key_ref.object!r}, {self.level})"

    @property
    def _signer(self) -> PKCS11Signer:
        # PadesSealer.seal() signs with self._signer: open the session on demand.
        self._open_locked()
        assert self._p11_signer is not None
        return self._p11_signer

    @property
    def session(self) -> pkcs11.Session | None:
        """The open PKCS#11 session, or ``None`` before :meth:`open`/after :meth:`close`."""
        return self._session

    @property
    def seal_name(self) -> str:
        """Common name of the seal certificate (opens the session if needed)."""
        self.open()
        return self._seal_name

    @seal_name.setter
    def seal_name(self, value: str) -> None:
        self._seal_name = value

    def open(self) -> None:
        """Open the session and load key and certificates, unless already open.

        Raises :class:`KeyAccessError` for a missing module, token, key or
        certificate and for a wrong PIN.
        """
        with self._lock:
            self._open_locked()

    def close(self) -> None:
        """Log out and close the session; a later seal opens a new one."""
        with self._lock:
            self._drop_session()

    def __enter__(self) -> Pkcs11Sealer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def seal(
        self,
        pdf: bytes,
        *,
        field_name: str = "EhubSeal1",
        reason: str,
        location: str,
        signing_time: datetime | None = None,
        certify: bool = False,
        box: tuple[int, int, int, int] | None = None,
        reserve: Sequence[tuple[str, tuple[int, int, int, int]]] = (),
    ) -> bytes:
        """Return ``pdf`` with an added PAdES signature (incremental update).

        Same contract as :meth:`signing.pades.PadesSealer.seal`; in addition
        :class:`KeyAccessError` if the key cannot be used and
        :class:`SealUnavailable` if the token went away and reopening failed.
        A lost session (token reset, logged out) is reopened once.
        """
        args: dict[str, Any] = {
            "field_name": field_name,
            "reason": reason,
            "location": location,
            "signing_time": signing_time,
            "certify": certify,
            "box": box,
            "reserve": reserve,
        }
        return self._in_session(lambda: PadesSealer.seal(self, pdf, **args))

    def sign_raw(self, data: bytes, digest_algorithm: str = "sha256") -> bytes:
        """Hash ``data`` (``"sha256"``, ``"sha384"`` or ``"sha512"``) and sign it in the token.

        Signs as this sealer's pyHanko ``PKCS11Signer`` signs a PDF: the
        mechanism is pyHanko's choice for the key type and the signer's
        settings (raw mode here: CKM_ECDSA over the digest, re-encoded as DER;
        CKM_RSA_PKCS over a DigestInfo), in the persistent session, under the
        same lock. Returns what ``cryptography``'s ``sign`` returns (DER for
        ECDSA). Errors as :meth:`seal`, plus :class:`SigningError` for another
        digest.
        """
        digest = digest_algorithm.lower()
        if digest not in _RAW_DIGESTS:
            raise SigningError(f"unsupported digest {digest_algorithm!r} for a token signature")
        message = bytes(data)
        return self._in_session(lambda: self._sign_raw_locked(message, digest))

    def xml_material(
        self,
    ) -> tuple[TokenEcKey | TokenRsaKey, x509.Certificate, list[x509.Certificate]]:
        """(key, seal certificate, issuing chain) for :func:`signing.xmlsig.sign_license_xml`.

        The same shape as :func:`signing.xmlsig.load_seal_material`, but the
        key is a :mod:`signing.pkcs11_xml` object that signs through
        :meth:`sign_raw` and cannot be exported. Opens the session if needed
        (:class:`KeyAccessError` as :meth:`open`). The chain is the issuing
        CAs on the token and in ``ca_chain``, without self-signed roots.
        """
        with self._lock:
            self._open_locked()
            assert self._p11_signer is not None
            leaf = self._p11_signer.signing_cert
            others = list(self._p11_signer.cert_registry)
        cert = x509.load_der_x509_certificate(leaf.dump())
        chain = issuing_chain(cert, (x509.load_der_x509_certificate(c.dump()) for c in others))
        return token_key(self, cert, f"{self.key_ref.token}/{self.key_ref.object}"), cert, chain

    # --- internals ---

    def _in_session(self, action: Callable[[], _T]) -> _T:
        """Run ``action`` (a signature) under the lock in an open session; a lost
        session is reopened once, then the token counts as unavailable."""
        with self._lock:
            self._open_locked()
            try:
                return self._signing(action)
            except _LOST_SESSION_ERRORS as exc:
                log.warning("PKCS#11 session lost (%s); reopening once", type(exc).__name__)
                self._drop_session(quiet=True)
            try:
                self._open_locked()
                return self._signing(action)
            except (*_LOST_SESSION_ERRORS, KeyAccessError) as again:
                self._drop_session(quiet=True)
                raise SealUnavailable(
                    f"PKCS#11 token {self.key_ref.token!r} is unavailable: {type(again).__name__}"
                ) from again

    def _sign_raw_locked(self, message: bytes, digest: str) -> bytes:
        # What PKCS11Signer.async_sign_raw does, minus its event loop and
        # executor thread (ten times the cost of the signature on SoftHSM2).
        signer = self._p11_signer
        assert signer is not None and self._raw_key is not None and self._raw_key[0] is signer
        spec = pyhanko_pkcs11.select_pkcs11_signing_params(
            signer.get_signature_mechanism_for_digest(digest),
            digest,
            use_raw_mechanism=signer.use_raw_mechanism,
            sign_kwargs=signer.sign_kwargs(message),
        )
        tbs = spec.pre_sign_transform(message) if spec.pre_sign_transform else message
        signature = bytes(self._raw_key[1].sign(tbs, **spec.sign_kwargs))
        return spec.post_sign_transform(signature) if spec.post_sign_transform else signature

    def _signing(self, action: Callable[[], _T]) -> _T:
        try:
            return action()
        except _LOST_SESSION_ERRORS:
            raise
        except p11_errors.PKCS11Error as exc:
            raise KeyAccessError(
                f"PKCS#11 token {self.key_ref.token!r} refused to sign with "
                f"{self.key_ref.object!r}: {type(exc).__name__}"
            ) from exc

    def _open_locked(self) -> None:
        if self._p11_signer is not None and self._opened_in == os.getpid():
            return
        if self._p11_signer is not None:
            # Forked since the session was opened: the handles belong to the
            # parent (closing them here would log the parent out); drop them.
            self._session, self._p11_signer = None, None
        if self._pin_refused is not None:
            # Never try a refused PIN twice: a real token locks after a few.
            raise self._pin_refused
        ref = self.key_ref
        module = ref.module_path or default_module()
        lib = load_module(module)
        token = find_token_by_label(lib, ref.token)
        if token is None:
            raise KeyAccessError(f"no PKCS#11 token labelled {ref.token!r} in module {module}")
        try:
            session = open_user_session(token, self._pin)
        except _PIN_ERRORS as exc:
            self._pin_refused = KeyAccessError(
                f"PKCS#11 login to token {ref.token!r} failed: wrong or unusable user PIN "
                f"({type(exc).__name__}); not retried with this PIN"
            )
            raise self._pin_refused from exc
        except p11_errors.PKCS11Error as exc:
            raise KeyAccessError(
                f"cannot open a session on PKCS#11 token {ref.token!r}: {type(exc).__name__}"
            ) from exc
        self.session_opens += 1
        self._opened_in = os.getpid()
        signer = PKCS11Signer(
            session,
            cert_label=ref.object,
            key_label=ref.object,
            ca_chain=self._ca_chain or None,
            other_certs_to_pull=None,  # the issuing chain stored on the token
            # SoftHSM2 offers ECDSA only on pre-hashed data (CKM_ECDSA).
            use_raw_mechanism=True,
        )
        try:
            cert = signer.signing_cert  # pulls certificate and key handle now
            chain = {c.sha256: c for c in [cert, *signer.cert_registry]}.values()
            # pyHanko found exactly one such key; sign_raw's handle on it, taken
            # now so that no search ever runs on a session that may be lost.
            keys = list(session.get_objects(signer.signing_key_fetch_params()))
        except p11_errors.PKCS11Error as exc:
            _close_quietly(session)
            raise KeyAccessError(
                f"PKCS#11 token {ref.token!r} lacks a usable key or certificate "
                f"labelled {ref.object!r}: {exc}"
            ) from exc
        if len(keys) != 1 or not isinstance(keys[0], pkcs11.SignMixin):
            _close_quietly(session)
            raise KeyAccessError(
                f"PKCS#11 token {ref.token!r} lacks one signing key labelled {ref.object!r}"
            )
        self._session, self._p11_signer = session, signer
        self._raw_key = (signer, keys[0])
        # As PadesSealer: reserve from the chain size, two hex digits per byte.
        reserve = sum(len(c.dump()) for c in chain) + _RESERVE_OVERHEAD
        if self.level is not PadesLevel.B_B:
            reserve += _TIMESTAMP_RESERVE
        self._bytes_reserved = 2 * reserve
        self._cert_id = cert.sha256.hex()[:16].upper()
        self._seal_name = cert.subject.native.get("common_name", "")
        log.info("opened PKCS#11 session on token %s (cert %s)", ref.token, self._cert_id)

    def _drop_session(self, *, quiet: bool = False) -> None:
        session, self._session, self._p11_signer = self._session, None, None
        if session is None or self._opened_in != os.getpid():
            return  # nothing open, or the parent's session after a fork
        if quiet:
            _close_quietly(session)
            return
        try:
            session.close()
        except p11_errors.PKCS11Error as exc:
            log.warning("closing PKCS#11 session failed: %s", type(exc).__name__)


def _close_quietly(session: Any) -> None:
    with contextlib.suppress(p11_errors.PKCS11Error):
        session.close()


def sealer_for(
    key_ref: str,
    *,
    passphrase: str | bytes | None = None,
    pin: str | None = None,
    **options: Any,
) -> PadesSealer:
    """The sealer for a seal registry ``key_ref``: PKCS#11 URI or PKCS#12 path.

    ``options`` (``visible``, ``level``, ``tsa_url``, ``trust_roots``,
    ``timeout``) go to either sealer. A PKCS#12 path needs ``passphrase``; a
    PKCS#11 URI takes ``pin`` (else ``$EHUB_PKCS11_PIN`` or its pin-source).
    """
    if is_pkcs11_uri(key_ref):
        return Pkcs11Sealer(key_ref, pin, **options)
    if passphrase is None:
        raise KeyAccessError(f"the PKCS#12 key store {key_ref} needs a passphrase")
    return PadesSealer(Path(key_ref), passphrase, **options)
