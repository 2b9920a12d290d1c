"""API clients: the issuing systems allowed to post licenses to the hub (on-demand sealing).

A client acts for one department — the issuer code (ZZBFJGDM, a USCC) every
license it posts must carry — and may post only to the API sources it was
given. It authenticates with a bearer token shown once at creation; the hub
keeps only the token's SHA-256, so a leaked database does not leak tokens. A
revoked client is refused from its next request.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ehub.errors import ConfigError
from ehub.identifiers import is_valid_uscc
from ehub.store.db import Store, utcnow
from ehub.store.models import ApiClient

TOKEN_PREFIX = "ehub_"


class ApiClientError(ConfigError):
    """An API client cannot be created or changed as asked."""


@dataclass(frozen=True, slots=True)
class ClientInfo:
    id: int
    name: str
    department_uscc: str
    source_ids: tuple[str, ...]
    token_hint: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_client(
    store: Store, name: str, department_uscc: str, source_ids: Sequence[str]
) -> tuple[ClientInfo, str]:
    """Register a client; returns it and its bearer token (shown once, never stored)."""
    from ehub.sources.loader import find_spec

    if not is_valid_uscc(department_uscc):
        raise ApiClientError(f"department USCC {department_uscc!r} is not valid (GB 32100)")
    if not source_ids:
        raise ApiClientError("give at least one API source the client may post to")
    for sid in source_ids:
        spec = find_spec(sid)
        if spec.kind != "api":
            raise ApiClientError(
                f"source {sid} is of kind {spec.kind}; clients post to api sources"
            )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiClient(
        name=name,
        department_uscc=department_uscc,
        source_ids=list(dict.fromkeys(source_ids)),
        token_sha256=token_digest(token),
        token_hint=token[: len(TOKEN_PREFIX) + 4],
        created_at=utcnow(),
        revoked_at=None,
    )
    try:
        with store.session() as s:
            s.add(row)
            s.flush()
            info = _info(row)
    except IntegrityError as exc:
        raise ApiClientError(f"an API client named {name!r} exists already") from exc
    return info, token


def authenticate(store: Store, token: str) -> ClientInfo | None:
    """The active client holding ``token``, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with store.session() as s:
        row = s.scalar(select(ApiClient).where(ApiClient.token_sha256 == token_digest(token)))
        if row is None or row.revoked_at is not None:
            return None
        return _info(row)


def list_clients(store: Store) -> list[ClientInfo]:
    with store.session() as s:
        return [_info(r) for r in s.scalars(select(ApiClient).order_by(ApiClient.id))]


def revoke_client(store: Store, name: str) -> ClientInfo:
    with store.session() as s:
        row = s.scalar(select(ApiClient).where(ApiClient.name == name))
        if row is None:
            raise ApiClientError(f"no API client named {name!r}")
        if row.revoked_at is not None:
            raise ApiClientError(f"API client {name!r} was revoked already ({row.revoked_at})")
        row.revoked_at = utcnow()
        s.flush()
        return _info(row)


def _info(row: ApiClient) -> ClientInfo:
    return ClientInfo(
        row.id,
        row.name,
        row.department_uscc,
        tuple(row.source_ids),
        row.token_hint,
        row.created_at,
        row.revoked_at,
    )
