"""Who is calling: an API key (``Authorization: Bearer <key>`` or ``X-API-Key``, or the
review page's cookie) resolved to its role. Every route says which roles it admits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from serving.keys import Role, find_key

COOKIE = "triage_key"


@dataclass(frozen=True)
class Caller:
    key_id: int
    name: str
    role: Role

    @property
    def tag(self) -> str:
        """How the caller is recorded on letters and reviews."""
        return f"key:{self.key_id}"


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or request.cookies.get(COOKIE)


async def identify(request: Request) -> Caller | None:
    """The caller behind the presented key, or None (no key, unknown or revoked key)."""
    key = presented_key(request)
    if not key or len(key) > 200:
        return None
    store = request.app.state.services.store

    def lookup() -> Caller | None:
        with store.session() as session:
            row = find_key(session, key)
            return None if row is None else Caller(row.id, row.name, row.role)  # type: ignore[arg-type]

    caller = await run_in_threadpool(lookup)
    request.state.caller = caller
    return caller


def require(*roles: Role) -> Callable[[Request], object]:
    """A dependency admitting only callers with one of ``roles`` (401 without a valid key,
    403 with a key of another role)."""

    async def dependency(request: Request) -> Caller:
        caller = await identify(request)
        if caller is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                "a valid API key is required: send 'Authorization: Bearer <key>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if caller.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this needs a key with role {' or '.join(roles)}; yours is {caller.role}")
        return caller

    return dependency


# route parameters: ``caller: Submitter`` admits intake and admin keys, and so on
AnyCaller = Annotated[Caller, Depends(require("intake", "supervisor", "admin"))]
Submitter = Annotated[Caller, Depends(require("intake", "admin"))]
Reader = AnyCaller
Reviewer = Annotated[Caller, Depends(require("supervisor", "admin"))]
Admin = Annotated[Caller, Depends(require("admin"))]
