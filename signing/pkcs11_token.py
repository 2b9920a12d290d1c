"""PKCS#11 plumbing shared by the sealer and the SoftHSM2 helper.

- :class:`Pkcs11KeyRef`: where a seal key lives, as an RFC 7512 ``pkcs11:``
  URI (token label, object label, ``module-path``, ``pin-source`` file; never
  the PIN itself); :func:`is_pkcs11_uri` tells it from a PKCS#12 path.
- :func:`load_module`: the process-wide, initialised PKCS#11 module, re-
  initialised when ``$SOFTHSM2_CONF`` changed or after a fork.
- :func:`find_token_by_label`, :func:`open_user_session`, :func:`resolve_pin`.

Vendor errors become :class:`signing.errors.KeyAccessError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

import pkcs11
from pkcs11 import exceptions as p11_errors
from pyhanko.config.pkcs11 import TokenCriteria
from pyhanko.sign.pkcs11 import find_token

from signing.errors import KeyAccessError

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as P11Lib

log = logging.getLogger(__name__)

PIN_ENV = "EHUB_PKCS11_PIN"
MODULE_ENV = "EHUB_PKCS11_MODULE"
URI_SCHEME = "pkcs11:"

SOFTHSM_MODULE_CANDIDATES: tuple[str, ...] = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


# --- key references --------------------------------------------------------


@dataclass(frozen=True)
class Pkcs11KeyRef:
    """Where a seal key lives: token label, object label, module, PIN file.

    The private key and its certificate share the label ``object``; the
    issuing chain is read from the other certificates on the token.
    """

    token: str
    """Token label (CKA_LABEL of the token, at most 32 characters)."""
    object: str
    """Label of the private key and of its certificate on the token."""
    module_path: Path | None = None
    """PKCS#11 module; ``None`` means ``$EHUB_PKCS11_MODULE`` or SoftHSM2."""
    pin_source: Path | None = None
    """File holding the user PIN (mode 0600), if the PIN is not given otherwise."""

    def uri(self) -> str:
        """The RFC 7512 form, e.g. ``pkcs11:token=t;object=k?module-path=…``."""
        path = f"token={_enc(self.token)};object={_enc(self.object)};type=private"
        query = []
        if self.module_path is not None:
            query.append(f"module-path={_enc(str(self.module_path))}")
        if self.pin_source is not None:
            query.append(f"pin-source={_enc('file:' + str(self.pin_source))}")
        return URI_SCHEME + path + ("?" + "&".join(query) if query else "")

    @classmethod
    def parse(cls, uri: str) -> Pkcs11KeyRef:
        """Parse a ``pkcs11:`` URI; raises :class:`KeyAccessError` if malformed."""
        if not is_pkcs11_uri(uri):
            raise KeyAccessError(f"not a PKCS#11 key reference: {uri!r}")
        body = uri[len(URI_SCHEME) :]
        path, _, query = body.partition("?")
        attrs = _pairs(path, ";")
        params = _pairs(query, "&")
        if "pin-value" in params:
            raise KeyAccessError("PKCS#11 key references must not carry the PIN (pin-value)")
        token, obj = attrs.get("token"), attrs.get("object")
        if not token or not obj:
            raise KeyAccessError(f"PKCS#11 key reference needs token= and object=: {uri!r}")
        pin_source = params.get("pin-source")
        if pin_source is not None:
            pin_source = pin_source.removeprefix("file://").removeprefix("file:")
        module = params.get("module-path")
        return cls(
            token=token,
            object=obj,
            module_path=Path(module) if module else None,
            pin_source=Path(pin_source) if pin_source else None,
        )


def is_pkcs11_uri(key_ref: str) -> bool:
    """True when ``key_ref`` names a PKCS#11 key (else it is a PKCS#12 path)."""
    return key_ref.startswith(URI_SCHEME)


def _enc(value: str) -> str:
    return quote(value, safe="/-_.~:")


def _pairs(text: str, sep: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, text.split(sep)):
        name, eq, value = item.partition("=")
        if not eq:
            raise KeyAccessError(f"malformed PKCS#11 URI attribute {name!r}")
        out[name] = unquote(value)
    return out


# --- the PKCS#11 module ----------------------------------------------------

# Module path -> $SOFTHSM2_CONF when it was initialised (pkcs11.lib caches
# the module object itself, one per path and process).
_CONF_AT_INIT: dict[str, tuple[str | None, int]] = {}
_LIBS_LOCK = threading.Lock()


def default_module() -> Path:
    """``$EHUB_PKCS11_MODULE`` if set, else the first SoftHSM2 module found."""
    explicit = os.environ.get(MODULE_ENV)
    if explicit:
        return Path(explicit)
    for candidate in SOFTHSM_MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise KeyAccessError(
        f"no PKCS#11 module: set ${MODULE_ENV} or install SoftHSM2 (libsofthsm2.so not found)"
    )


def load_module(path: Path, *, refresh: bool = False) -> P11Lib:
    """The process-wide handle of a PKCS#11 module, loaded and initialised once.

    The module is re-initialised (C_Finalize + C_Initialize, which invalidates
    every session this process holds on it) when ``refresh`` is true, when
    ``$SOFTHSM2_CONF`` changed since it was initialised (SoftHSM2 reads its
    configuration and token list only in C_Initialize), or in a child process
    forked after the initialisation (PKCS#11 requires a new C_Initialize there).
    """
    key = str(path)
    state = (os.environ.get("SOFTHSM2_CONF"), os.getpid())
    with _LIBS_LOCK:
        try:
            lib = pkcs11.lib(key)
        except p11_errors.PKCS11Error as exc:
            raise KeyAccessError(f"cannot load PKCS#11 module {path}: {exc}") from exc
        previous = _CONF_AT_INIT.get(key)
        if previous is not None and (refresh or previous != state):
            log.info("re-initialising PKCS#11 module %s", path)
            # After a fork C_Finalize may answer CKR_CRYPTOKI_NOT_INITIALIZED;
            # python-pkcs11 marks the module uninitialised either way.
            with contextlib.suppress(p11_errors.PKCS11Error):
                lib.finalize()
            try:
                lib.initialize()
            except p11_errors.PKCS11Error as exc:
                raise KeyAccessError(f"cannot initialise PKCS#11 module {path}: {exc}") from exc
        _CONF_AT_INIT[key] = state
        return lib


def find_token_by_label(lib: P11Lib, label: str) -> pkcs11.Token | None:
    """The token labelled ``label``, or ``None``."""
    try:
        token = find_token(lib.get_slots(), token_criteria=TokenCriteria(label=label))
    except p11_errors.PKCS11Error as exc:
        raise KeyAccessError(f"cannot list the slots of the PKCS#11 module: {exc}") from exc
    return token


def open_user_session(token: pkcs11.Token, pin: str) -> pkcs11.Session:
    """Open a session on ``token`` and log the user in (one C_Login)."""
    return token.open(user_pin=pin)


def resolve_pin(ref: Pkcs11KeyRef, pin: str | None) -> str:
    """The user PIN: ``pin``, else ``$EHUB_PKCS11_PIN``, else the pin-source file."""
    if pin:
        return pin
    from_env = os.environ.get(PIN_ENV)
    if from_env:
        return from_env
    if ref.pin_source is not None:
        try:
            text = ref.pin_source.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KeyAccessError(f"cannot read PIN file {ref.pin_source}: {exc.strerror}") from exc
        if text:
            return text
        raise KeyAccessError(f"PIN file {ref.pin_source} is empty")
    raise KeyAccessError(
        f"no PIN for PKCS#11 token {ref.token!r}: pass one, set ${PIN_ENV} or add pin-source"
    )
