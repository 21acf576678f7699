"""The review page (Chinese UI, server-rendered): log in with a supervisor key, the queue
lowest confidence first with filters, a letter with its scores, highlighted key fields,
evidence sentences, linked letters and audit trail, and a form to confirm or correct it
(mouse or keyboard). Saving goes through the same API as everything else."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from model.evidence import evidence
from serving.auth import COOKIE, Caller, identify
from serving.keys import find_key
from serving.letters import QueueFilter, current_labels, letter_out
from serving.review import queue_filter, read_queue
from serving.schemas import RowId
from serving.services import Services, ServicesDep
from serving.store import get_letter_by_id, reviews_of

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/review", include_in_schema=False)
REVIEW_ROLES = ("supervisor", "admin")


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def highlight(text: str, key_fields: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The text cut into (piece, kind) with kind 'place', 'person', 'amount', 'date' or None."""
    wanted = [(p, "place") for p in key_fields.get("places", [])]
    wanted += [(p["name"], "person") for p in key_fields.get("people", []) if p.get("name")]
    wanted += [(a["text"], "amount") for a in key_fields.get("amounts", [])]
    wanted += [(d, "date") for d in key_fields.get("dates", [])]
    kinds: list[str | None] = [None] * len(text)
    for phrase, kind in sorted(wanted, key=lambda w: -len(w[0])):  # longer phrases win
        start = text.find(phrase)
        while phrase and start >= 0:
            if all(k is None for k in kinds[start:start + len(phrase)]):
                kinds[start:start + len(phrase)] = [kind] * len(phrase)
            start = text.find(phrase, start + len(phrase))
    pieces: list[tuple[str, str | None]] = []
    for ch, kind in zip(text, kinds, strict=True):
        if pieces and pieces[-1][1] == kind:
            pieces[-1] = (pieces[-1][0] + ch, kind)
        else:
            pieces.append((ch, kind))
    return pieces


async def reviewer_or_none(request: Request) -> Caller | None:
    caller = await identify(request)
    return caller if caller is not None and caller.role in REVIEW_ROLES else None


PageCaller = Annotated[Caller | None, Depends(reviewer_or_none)]


def _login(request: Request, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": error}, status_code=status_code)


@router.get("", response_class=HTMLResponse)
async def queue_page(request: Request, caller: PageCaller, s: ServicesDep,
                     f: Annotated[QueueFilter, Depends(queue_filter)]) -> Response:
    if caller is None:
        return _login(request)
    queue = await run_in_threadpool(read_queue, s, f)
    return templates.TemplateResponse(request, "queue.html", {
        "caller": caller, "queue": queue, "schema": s.schema, "filter": f,
        "params": request.query_params})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, key: Annotated[str, Form()], s: ServicesDep) -> Response:
    def check() -> str | None:
        with s.store.session() as session:
            row = find_key(session, key.strip())
            return None if row is None else row.role

    role = await run_in_threadpool(check) if 0 < len(key) <= 200 else None
    if role not in REVIEW_ROLES:
        return _login(request, "密钥无效，或没有审核权限（需要 supervisor 角色的密钥）。", 401)
    response = RedirectResponse("/review", status_code=303)
    response.set_cookie(COOKIE, key.strip(), httponly=True, samesite="strict",
                        secure=s.settings.cookie_secure, path="/")
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/review", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _label_name(s: Services, head_name: str, label: str) -> str:
    head = s.schema.heads[head_name]
    return head.name if head.type == "binary" else head.label(label).name


def _letter_page(s: Services, letter_id: int) -> dict[str, Any] | None:
    with s.store.session() as session:
        letter = get_letter_by_id(session, letter_id=letter_id)
        if letter is None:
            return None
        view = letter_out(session, letter, s.schema, with_text=True)
        trail = reviews_of(session, letter_id=letter_id)
        chosen = current_labels(s.schema, letter.predictions)
    following = read_queue(s, QueueFilter(limit=2))
    nxt = next((item.id for item in following.items if item.id != letter_id), None)
    return {"letter": view, "trail": trail, "next_id": nxt,
            "pieces": highlight(view.text or "", view.key_fields),
            "evidence": [{**asdict(e), "label_name": _label_name(s, e.head, e.label)}
                         for e in evidence(s.engine.classifier, view.text or "", chosen)]}


@router.get("/letters/{letter_id}", response_class=HTMLResponse)
async def letter_page(letter_id: RowId, request: Request, caller: PageCaller, s: ServicesDep) -> Response:
    if caller is None:
        return _login(request)
    context = await run_in_threadpool(_letter_page, s, letter_id)
    if context is None:
        return templates.TemplateResponse(request, "missing.html", {"letter_id": letter_id}, status_code=404)
    request.state.letter_id = letter_id
    return templates.TemplateResponse(request, "letter.html", {
        **context, "caller": caller, "schema": s.schema})
