"""Intake routes: submit letters (one or a batch) and read them back.

A success answer means the letter and its prediction are committed. The same
``external_id`` sent again returns the stored answer (200), never a second record.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from serving.auth import Caller, Reader, Submitter
from serving.engine import Analysis
from serving.letters import letter_out, linking_entry, new_letter
from serving.schemas import (
    API_ERRORS,
    POST_ERRORS,
    BatchIn,
    BatchItemOut,
    BatchOut,
    LetterIn,
    LetterOut,
    RowId,
    error_responses,
)
from serving.services import Services, ServicesDep
from serving.store import Letter, get_letter, get_letter_by_id

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["letters"], responses=API_ERRORS)


class Refused(Exception):
    """A letter refused before the model sees it: the HTTP status and why."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def _check_length(s: Services, given: LetterIn) -> None:
    if len(given.text) > s.settings.max_text_chars:
        raise Refused(413, f"text has {len(given.text)} characters; the limit is "
                           f"{s.settings.max_text_chars} (setting TRIAGE_MAX_TEXT_CHARS)")


def _visible(caller: Caller, letter: Letter) -> bool:
    return caller.role != "intake" or letter.submitted_by == caller.tag


def _stored(s: Services, caller: Caller, external_id: str) -> LetterOut | None:
    """The stored answer for this external id, if any (409 if another intake key owns it)."""
    with s.store.session() as session:
        letter = get_letter(session, external_id=external_id)
        if letter is None:
            return None
        if not _visible(caller, letter):
            raise Refused(409, f"external_id {external_id!r} was already used by another submitter; "
                               "use your own id scheme")
        return letter_out(session, letter, s.schema, with_text=False)


def _store(s: Services, caller: Caller, given: LetterIn, analysis: Analysis) -> tuple[int, LetterOut]:
    """Link and commit one analysed letter: (201, stored) or (200, the earlier record)."""
    with s.matters.lock, s.store.writing() as session:
        s.matters.catch_up(session)
        entry = linking_entry(s.schema, given, analysis, s.matters.vector_space)
        decision = s.matters.link(entry)
        letter = new_letter(s.schema, given, analysis, entry, decision, caller.tag)
        session.add(letter)
        try:
            session.flush()
        except IntegrityError:  # the same external_id committed meanwhile (another replica)
            session.rollback()
            existing = _stored(s, caller, given.external_id)
            if existing is None:
                raise
            return status.HTTP_200_OK, existing
        answer = letter_out(session, letter, s.schema, with_text=False)
    s.metrics.count_prediction(letter.labels, letter.needs_review)
    logger.info("letter %d stored (matter %s, %d links, review=%s)", letter.id, letter.matter_id,
                len(letter.repeat_of), letter.needs_review)
    return status.HTTP_201_CREATED, answer


async def _submit_many(s: Services, caller: Caller, letters: list[LetterIn]) -> list[tuple[int, Any]]:
    """(status, LetterOut or error text) per letter, in order."""
    results: list[tuple[int, Any] | None] = [None] * len(letters)
    fresh: list[int] = []
    for i, given in enumerate(letters):
        try:
            _check_length(s, given)
            existing = await run_in_threadpool(_stored, s, caller, given.external_id)
        except Refused as refused:
            results[i] = (refused.status_code, refused.detail)
            continue
        if existing is not None:
            results[i] = (status.HTTP_200_OK, existing)
        elif any(letters[j].external_id == given.external_id for j in fresh):
            results[i] = (422, f"external_id {given.external_id!r} appears twice in this batch")
        else:
            fresh.append(i)
    texts = [s.schema.join_text(letters[i].model_dump()) for i in fresh]
    analyses = await s.worker.analyse(texts) if texts else []
    for i, analysis in zip(fresh, analyses, strict=True):
        try:
            results[i] = await run_in_threadpool(_store, s, caller, letters[i], analysis)
        except Refused as refused:
            results[i] = (refused.status_code, refused.detail)
    return [r for r in results if r is not None]


@router.post("/letters", response_model=LetterOut, status_code=201,
             responses={200: {"model": LetterOut, "description": "already stored: the stored answer"},
                        **POST_ERRORS, **error_responses(409)})
async def submit_letter(given: LetterIn, request: Request, response: Response,
                        caller: Submitter,
                        s: ServicesDep) -> LetterOut:
    """Classify, extract key fields, link to earlier letters of the same matter, store."""
    [(code, result)] = await _submit_many(s, caller, [given])
    if code >= 400:
        raise HTTPException(code, result)
    response.status_code = code
    request.state.letter_id = result.id
    return result  # type: ignore[no-any-return]


@router.post("/letters:batch", response_model=BatchOut, responses=POST_ERRORS)
async def submit_batch(batch: BatchIn, caller: Submitter,
                       s: ServicesDep) -> BatchOut:
    """Several letters at once; each gets its own status (201, 200, 409, 413 or 422 with the reason)."""
    if len(batch.letters) > s.settings.batch_limit:
        raise HTTPException(413, f"the batch has {len(batch.letters)} letters; the limit is "
                                 f"{s.settings.batch_limit} (setting TRIAGE_BATCH_LIMIT)")
    parsed: dict[int, LetterIn] = {}
    out: list[BatchItemOut] = []
    for i, raw in enumerate(batch.letters):
        try:
            parsed[i] = LetterIn.model_validate(raw)
        except ValidationError as err:
            out.append(BatchItemOut(index=i, status=422, error="; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())))
    results = await _submit_many(s, caller, list(parsed.values()))
    for i, (code, result) in zip(parsed, results, strict=True):
        out.append(BatchItemOut(index=i, status=code, letter=result if code < 400 else None,
                                error=result if code >= 400 else None))
    return BatchOut(results=sorted(out, key=lambda item: item.index))


@router.get("/letters/{letter_id}", response_model=LetterOut, responses=error_responses(404))
async def read_letter(letter_id: RowId, request: Request, caller: Reader,
                      s: ServicesDep) -> LetterOut:
    """A stored letter with its text (intake keys see only the letters they submitted)."""

    def read() -> LetterOut | None:
        with s.store.session() as session:
            letter = get_letter_by_id(session, letter_id=letter_id)
            if letter is None or not _visible(caller, letter):
                return None
            return letter_out(session, letter, s.schema, with_text=True)

    found = await run_in_threadpool(read)
    if found is None:
        raise HTTPException(404, f"no letter {letter_id} that this key may read")
    request.state.letter_id = letter_id
    return found
