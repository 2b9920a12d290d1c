"""Who may use the hub API and dashboard: operator tokens and department users.

Tokens are configured by digest in ``EHUB_API_TOKENS`` (``name:sha256-hex`` entries);
the token itself is never stored. A token named ``<department>/<user>`` belongs to a
department user: it sees only that department's records and quarantine (the
department is the first part of its sources' ids, e.g. ``market_regulation``), and
gets 403 on the province-wide views.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ehub.errors import ConfigError

TOKENS_ENV = "EHUB_API_TOKENS"
COOKIE = "ehub_operator"
_DIGEST = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"(?:[a-z0-9_]{1,40}/)?[A-Za-z0-9_.@-]{1,64}")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(name: str) -> tuple[str, str]:
    """A new operator token and its ``EHUB_API_TOKENS`` entry (``name:digest``)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"operator name {name!r}: use 1-64 of A-Z a-z 0-9 _ . @ -")
    token = "ehop_" + secrets.token_urlsafe(32)
    return token, f"{name}:{token_digest(token)}"


def dev_operator_token(home: Path) -> tuple[str, str]:
    """The dev stack's operator token (made once, kept in ``<home>/operator_token``, mode
    0600) and its ``EHUB_API_TOKENS`` entry; production configures its own tokens."""
    path = home / "operator_token"
    if not path.exists():
        token, _entry = new_token("dev-operator")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    token = path.read_text().strip()
    return token, f"dev-operator:{token_digest(token)}"


@dataclass(frozen=True, slots=True)
class OperatorTokens:
    """The operators' token digests: digest → operator name."""

    digests: Mapping[str, str]

    @classmethod
    def parse(cls, text: str, *, origin: str = TOKENS_ENV) -> OperatorTokens:
        """``name:digest`` entries separated by commas or whitespace; a bare digest is
        named after its position. A malformed entry is refused naming its position."""
        out: dict[str, str] = {}
        for n, entry in enumerate(e for e in re.split(r"[,\s]+", text.strip()) if e):
            name, _, digest = entry.rpartition(":")
            name = name or f"operator{n + 1}"
            digest = digest.lower()
            if not _DIGEST.fullmatch(digest) or not _NAME.fullmatch(name):
                raise ConfigError(
                    f"{origin}: entry {n + 1} is not name:sha256-hex-digest "
                    "(64 hex digits; the token's digest, never the token)"
                )
            out[digest] = name
        return cls(out)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorTokens:
        return cls.parse((env if env is not None else os.environ).get(TOKENS_ENV, ""))

    def operator(self, token: str) -> str | None:
        """The operator holding ``token`` (constant-time comparison), or None."""
        digest = token_digest(token)
        found = None
        for known, name in self.digests.items():
            if hmac.compare_digest(known, digest):
                found = name
        return found


_bearer = HTTPBearer(auto_error=False, description="an operator token (EHUB_API_TOKENS)")


def _operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The operator whose token came as a bearer token (or in the sign-in cookie); 401 else."""
    known: OperatorTokens = request.app.state.operator_tokens
    token = credentials.credentials if credentials else request.cookies.get(COOKIE, "")
    name = known.operator(token) if token else None
    if name is None:
        raise HTTPException(401, "give an operator token as a bearer token",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    return name


Operator = Annotated[str, Depends(_operator)]


def department_of(operator: str) -> str | None:
    """The department a user is limited to: a token named ``<department>/<user>`` (the
    department is the first part of its sources' ids, e.g. ``market_regulation``) sees
    only that department's records and quarantine; None: a province operator."""
    dept, sep, _user = operator.partition("/")
    return dept if sep else None


def _province_operator(operator: Operator) -> str:
    """Views across departments (platforms, offices, seals, indicators, lineage): 403
    for a department user."""
    if department_of(operator) is not None:
        raise HTTPException(403, "a department user sees only its department's records "
                                 "and quarantine")  # fmt: skip
    return operator


ProvinceOperator = Annotated[str, Depends(_province_operator)]


def in_department(source_id: str, operator: str) -> bool:
    dept = department_of(operator)
    return dept is None or source_id.startswith(dept + ".")
