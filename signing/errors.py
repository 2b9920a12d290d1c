"""The exception tree of the signing package (seals, PAdES, verification).

Vendor errors (pyHanko, ``cryptography``, file-system errors) are translated
here at the boundary with ``raise ... from exc``, so callers only ever catch
:class:`SigningError` subclasses. Messages name the file or field involved but
never contain a passphrase or key material.

Tree::

    HubError (ehub.errors)
    └── SigningError                        base of everything raised by ``signing``
        ├── KeyAccessError (Terminal)       key store missing, unreadable, wrong
        │                                   passphrase, or holds no usable key
        ├── SealUnavailable (Transient)     the signing device/service cannot be
        │                                   reached now (PKCS#11 token, remote
        │                                   signer); retrying may succeed
        ├── UnsealableDocument (Terminal)   the input PDF cannot be parsed or sealed
        ├── SealFormatError (Terminal)      a GB/T 38540 SESeal / SES_Signature cannot
        │                                   be built or decoded (bad DER, bad field)
        ├── CryptoLibraryError (Terminal)   libcrypto (OpenSSL 3, for SM2/SM3) missing,
        │                                   without SM2, or a call failed; carries
        │                                   the call name and OpenSSL's reasons
        └── VerificationError (Terminal)    verification could not be run at all
                                            (e.g. an unreadable trust root); a
                                            signature that is merely invalid is
                                            reported, not raised
"""

from __future__ import annotations

from ehub.errors import HubError, Terminal, Transient


class SigningError(HubError):
    """Base of every error raised by :mod:`signing`."""


class KeyAccessError(SigningError, Terminal):
    """The signing key cannot be loaded: missing file, wrong passphrase,
    corrupt key store, or a key store without a private key."""


class SealUnavailable(SigningError, Transient):
    """The sealing device or service is temporarily unreachable."""


class UnsealableDocument(SigningError, Terminal):
    """The document handed to a sealer cannot be parsed or signed."""


class SealFormatError(SigningError, Terminal):
    """A GB/T 38540 structure (SESeal, SES_Signature) cannot be decoded, or the
    values given to build one are out of range. ``field`` names the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class VerificationError(SigningError, Terminal):
    """Verification could not be carried out (bad trust roots or settings).

    An invalid, tampered or untrusted signature is *not* an error: it is
    reported in :class:`signing.verify.PdfVerification`.
    """


class CryptoLibraryError(SigningError, Terminal):
    """The native crypto library failed: libcrypto (OpenSSL 3) missing, built
    without SM2/SM3, or a libcrypto call returned an error.

    ``call`` names the failing libcrypto function; ``reasons`` holds the OpenSSL
    error-queue strings (``ERR_error_string_n``), never key material.
    """

    def __init__(self, message: str, *, call: str, reasons: tuple[str, ...] = ()) -> None:
        detail = f" [{'; '.join(reasons)}]" if reasons else ""
        super().__init__(f"{message}{detail}")
        self.call = call
        self.reasons = reasons
