"""API keys with roles. Only a key's SHA-256 is stored; a presented key is hashed and
compared in constant time. Keys are long random tokens, so an unsalted hash is enough."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.store import ApiKey, utcnow

Role = Literal["intake", "supervisor", "admin"]
ROLES: tuple[Role, ...] = ("intake", "supervisor", "admin")
KEY_PREFIX = "tk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(session: Session, name: str, role: Role, key: str | None = None) -> tuple[ApiKey, str]:
    """A new key (random unless given) with its stored row; the key is not kept anywhere."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, found {role!r}")
    key = key or KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, role=role, key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return row, key


def find_key(session: Session, presented: str) -> ApiKey | None:
    """The live key matching ``presented``, or None (unknown or revoked)."""
    digest = hash_key(presented)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        return None
    return row


def revoke_key(session: Session, key_id: int) -> ApiKey | None:
    """Revoke a key (kept for the audit trail); None if there is no such key."""
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def has_admin(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.role == "admin",
                                                  ApiKey.revoked_at.is_(None)).limit(1)) is not None
