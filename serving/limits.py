"""Request limits, enforced before a body is parsed: a size limit (413) and JSON only on
the API's POST routes (415), each with a message saying what to change."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """ASGI middleware for POST/PUT/PATCH: bodies over ``max_bytes`` get 413; on the API
    (``/v1/``), bodies that are not JSON get 415 and bodies that are not UTF-8 get 400.
    The body is read here (it is at most ``max_bytes``) and replayed to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        too_large = (f"the request body is over the limit of {self.max_bytes} bytes "
                     "(setting TRIAGE_MAX_BODY_BYTES); send long letters one by one")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _reply(send, 413, too_large)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _reply(send, 413, too_large)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if scope["path"].startswith("/v1/") and body:
            content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if content_type != b"application/json":
                found = content_type.decode("latin-1") or "no content type"
                await _reply(send, 415, "send the body as JSON with 'Content-Type: application/json', "
                                        f"found {found!r}")
                return
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as err:
                await _reply(send, 400, f"the body is not UTF-8 (byte {err.start} is {body[err.start]:#04x});"
                                        " encode the JSON as UTF-8")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
