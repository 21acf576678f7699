"""Review routes (supervisors): the queue, a letter's review, its audit trail, evidence."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from model.evidence import evidence
from serving.auth import Reviewer
from serving.letters import (
    LabelError,
    QueueFilter,
    check_labels,
    current_labels,
    excerpt,
    letter_out,
    review_letter,
    review_queue,
)
from serving.schemas import (
    API_ERRORS,
    MAX_ROW_ID,
    POST_ERRORS,
    LetterOut,
    QueueItem,
    QueueOut,
    ReviewIn,
    ReviewOut,
    RowId,
    StoredTime,
    error_responses,
)
from serving.services import ServicesDep
from serving.store import Letter, get_letter_by_id, reviews_of

router = APIRouter(prefix="/v1", tags=["review"], responses=API_ERRORS)


def queue_filter(
    label: list[str] = Query(default=[], description="head:label, e.g. sector:campus_meals, repeat_cue:true"),
    min_confidence: float | None = Query(None, ge=0, le=1),
    max_confidence: float | None = Query(None, ge=0, le=1),
    received_from: StoredTime | None = None,
    received_to: StoredTime | None = None,
    include_reviewed: bool = False,
    all_letters: bool = Query(False, description="also letters the model was sure of"),
    sort: Literal["confidence", "-confidence", "received_at", "-received_at"] = "confidence",
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_ROW_ID),
) -> QueueFilter:
    return QueueFilter(labels=label, min_confidence=min_confidence, max_confidence=max_confidence,
                       received_from=received_from, received_to=received_to,
                       include_reviewed=include_reviewed, only_needing_review=not all_letters,
                       sort=sort, limit=limit, offset=offset)


def read_queue(s: ServicesDep, f: QueueFilter) -> QueueOut:
    with s.store.session() as session:
        total, rows = review_queue(session, f)
        return QueueOut(total=total, items=[QueueItem(
            id=r.id, external_id=r.external_id, received_at=r.received_at, confidence=r.confidence,
            labels=r.labels, needs_review=r.needs_review, reviewed=r.reviewed, excerpt=excerpt(r))
            for r in rows])


@router.get("/review-queue", response_model=QueueOut)
async def get_queue(caller: Reviewer, s: ServicesDep,
                    f: Annotated[QueueFilter, Depends(queue_filter)]) -> QueueOut:
    """Letters waiting for review, lowest confidence first unless sorted otherwise."""
    return await run_in_threadpool(read_queue, s, f)


def _letter_or_404(session: Session, letter_id: int) -> Letter:
    letter = get_letter_by_id(session, letter_id=letter_id)
    if letter is None:
        raise HTTPException(404, f"no letter {letter_id}")
    return letter


@router.post("/letters/{letter_id}/review", response_model=LetterOut,
             responses={**POST_ERRORS, **error_responses(404)})
async def post_review(letter_id: RowId, given: ReviewIn, caller: Reviewer, s: ServicesDep,
                      request: Request) -> LetterOut:
    """Record a supervisor's labels (heads left out stay; the same labels confirm them).
    Every review is appended to the letter's audit trail, never rewritten."""
    try:
        labels = check_labels(s.schema, given.labels)
    except LabelError as err:
        raise HTTPException(422, str(err)) from None

    def apply() -> LetterOut:
        with s.store.writing() as session:
            done = review_letter(session, letter_id, f"{caller.name} ({caller.tag})", labels, given.comment)
            if done is None:
                raise HTTPException(404, f"no letter {letter_id}")
            return letter_out(session, done[0], s.schema, with_text=True)

    request.state.letter_id = letter_id
    return await run_in_threadpool(apply)


@router.get("/letters/{letter_id}/reviews", response_model=list[ReviewOut],
            responses=error_responses(404))
async def get_reviews(letter_id: RowId, caller: Reviewer, s: ServicesDep) -> list[ReviewOut]:
    """The letter's audit trail, oldest first: who, when, from → to, model version, comment."""

    def read() -> list[ReviewOut]:
        with s.store.session() as session:
            _letter_or_404(session, letter_id)
            return [ReviewOut.model_validate(r, from_attributes=True)
                    for r in reviews_of(session, letter_id=letter_id)]

    return await run_in_threadpool(read)


@router.get("/letters/{letter_id}/evidence", responses=error_responses(404))
async def get_evidence(letter_id: RowId, caller: Reviewer, s: ServicesDep) -> list[dict[str, Any]]:
    """For each label the model chose, the sentences of the letter that score it highest."""

    def find() -> list[dict[str, Any]]:
        with s.store.session() as session:
            letter = _letter_or_404(session, letter_id)
            text, chosen = letter.text, current_labels(s.schema, letter.predictions)
        return [asdict(e) for e in evidence(s.engine.classifier, text, chosen)]

    return await run_in_threadpool(find)
