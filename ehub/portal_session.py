"""The office portal's sessions: the signing secret, the signed session value, login checks.

The session value is ``<payload>.<mac>`` (base64url): the office code, the id of
the credential used to log in and an expiry, signed with HMAC-SHA256 under a key
derived from the portal secret. It is signed, not encrypted: it holds no
credential and no personal data. The office and the credential are checked
against the store on every request (:func:`session_office`), so revoking
either ends the session at once. This module must not log credentials or
session values.

:class:`LoginThrottle` limits failed logins: after ``limit`` failures from one
client address for one office code within ``window_s`` seconds, further
attempts for that pair are refused (even with a good credential) until the
oldest failure leaves the window. Credentials are long random tokens, so this
is defence in depth against guessing and against filling the logs; the counts
are per server process and kept in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from sqlalchemy import select

from ehub.config import Settings
from ehub.errors import ConfigError
from ehub.offices import Office, OfficeNotFound, authenticate, get_office, token_digest
from ehub.store.db import Store
from ehub.store.models import OfficeCredentialRow

__all__ = [
    "SECRET_ENV",
    "LoginThrottle",
    "SessionCodec",
    "check_login",
    "portal_secret",
    "session_office",
]

SECRET_ENV = "EHUB_PORTAL_SECRET"
_MIN_SECRET = 32


def portal_secret(settings: Settings) -> bytes:
    """The session signing secret: ``$EHUB_PORTAL_SECRET`` (at least 32 characters),
    else ``$EHUB_HOME/portal.secret``, generated (mode 0600) on first use."""
    given = os.environ.get(SECRET_ENV, "")
    if given:
        if len(given) < _MIN_SECRET:
            raise ConfigError(f"{SECRET_ENV} must be at least {_MIN_SECRET} characters")
        return given.encode()
    path = settings.home / "portal.secret"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create the portal secret {path}: {exc.strerror}") from exc
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the portal secret {path}: {exc.strerror}") from exc
    if len(value) < _MIN_SECRET:
        raise ConfigError(f"the portal secret {path} is too short: delete it to generate one")
    return value.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Signs and reads the session value ``<payload>.<mac>`` (both base64url)."""

    def __init__(
        self, secret: bytes, *, max_age_s: int = 8 * 3600, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < _MIN_SECRET:
            raise ConfigError(f"the portal secret must be at least {_MIN_SECRET} bytes")
        self._key = hmac.new(secret, b"ehub office portal session v1", hashlib.sha256).digest()
        self.max_age_s = max_age_s
        self._clock = clock

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def dumps(self, office: str, credential_id: int) -> str:
        exp = int(self._clock()) + self.max_age_s
        payload = _b64(json.dumps({"o": office, "c": credential_id, "exp": exp}).encode())
        return f"{payload}.{self._mac(payload)}"

    def loads(self, value: str) -> tuple[str, int] | None:
        """(office code, credential id), or None if the value is forged, altered or expired."""
        payload, _, mac = value.partition(".")
        if not payload or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        try:
            data = json.loads(_unb64(payload))
            office, cred, exp = str(data["o"]), int(data["c"]), int(data["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        return (office, cred) if self._clock() < exp else None


def check_login(store: Store, code: str, token: str) -> tuple[Office | None, int, str]:
    """(office, credential id, "") on success, else (None, 0, why) with why in
    ``bad`` (no such credential for this code) | ``revoked``."""
    office = authenticate(store, token)
    with store.session() as s:
        cred = s.scalar(
            select(OfficeCredentialRow).where(
                OfficeCredentialRow.token_sha256 == token_digest(token)
            )
        )
        cred_office, cred_id = (cred.office_code, cred.id) if cred is not None else ("", 0)
    if cred_office != code:
        return None, 0, "bad"
    if office is None:
        return None, 0, "revoked"
    return office, cred_id, ""


def session_office(store: Store, code: str, cred_id: int) -> Office | None:
    with store.session() as s:
        cred = s.get(OfficeCredentialRow, cred_id)
        if cred is None or cred.revoked_at is not None or cred.office_code != code:
            return None
    try:
        office = get_office(store, code)
    except OfficeNotFound:
        return None
    return office if office.active else None


class LoginThrottle:
    """Failed logins per (client address, office code) in a sliding window."""

    def __init__(
        self,
        *,
        limit: int = 10,
        window_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit, self.window_s, self._clock, self._max_keys = limit, window_s, clock, max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, client: str, code: str) -> int:
        """Seconds until ``client`` may try ``code`` again; 0 when it may now."""
        now = self._clock()
        with self._lock:
            times = self._recent((client, code[:64]), now)
            if len(times) < self.limit:
                return 0
            return max(1, int(self.window_s - (now - times[0]) + 0.999))

    def failed(self, client: str, code: str) -> None:
        now = self._clock()
        with self._lock:
            key = (client, code[:64])
            times = self._recent(key, now)
            if not times:
                if len(self._failures) >= self._max_keys:  # bounded memory: forget the oldest
                    self._failures.pop(next(iter(self._failures)))
                self._failures[key] = times
            times.append(now)

    def succeeded(self, client: str, code: str) -> None:
        with self._lock:
            self._failures.pop((client, code[:64]), None)
