"""Admin routes: keys, export of reviewed letters, the model and its reload; and the
routes any caller may use (labels, model summary) and probes (health, readiness, metrics)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from model.inference import ModelLoadError
from serving.auth import Admin, AnyCaller
from serving.engine import Engine
from serving.keys import create_key, list_keys, revoke_key
from serving.letters import export_records
from serving.schemas import API_ERRORS, POST_ERRORS, KeyIn, KeyOut, ModelOut, ReloadIn, RowId, error_responses
from serving.services import Services, ServicesDep

logger = logging.getLogger(__name__)
router = APIRouter()


@router.get("/healthz", tags=["probes"])
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["probes"])
async def readyz(s: ServicesDep) -> JSONResponse:
    """Ready to take letters: the model is loaded and the store answers."""

    def store_answers() -> bool:
        try:
            with s.store.session() as session:
                session.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means not ready
            return False

    ok = await run_in_threadpool(store_answers)
    body = {"model": s.engine.version, "store": "ok" if ok else "unreachable"}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", tags=["probes"], response_class=PlainTextResponse)
async def metrics(s: ServicesDep) -> PlainTextResponse:
    """Prometheus metrics: requests, latency, predictions per label, review rate, queue depth."""
    s.metrics.queue_depth.set(s.worker.pending)
    return PlainTextResponse(generate_latest(s.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/labels", tags=["model"], responses=API_ERRORS)
async def labels(caller: AnyCaller, s: ServicesDep) -> dict[str, object]:
    """The label schema the model answers in (heads, label ids, Chinese names, departments)."""
    return s.schema.to_dict()


def _model_out(s: Services) -> ModelOut:
    engine = s.engine
    return ModelOut(version=engine.version, directory=str(s.settings.model_dir),
                    heads={n: h.type for n, h in s.schema.heads.items()},
                    calibration=engine.classifier.calibration.to_dict(),
                    linker="fitted" if engine.linker_fitted else "default",
                    vector_space=engine.vector_space, foreign_vectors=s.matters.foreign_vectors)


@router.get("/v1/model", response_model=ModelOut, tags=["model"], responses=API_ERRORS)
async def model_summary(caller: AnyCaller, s: ServicesDep) -> ModelOut:
    """The model in service: version, heads, calibration, linker."""
    return _model_out(s)


@router.post("/v1/model:reload", response_model=ModelOut, tags=["model"],
             responses={**API_ERRORS, **POST_ERRORS})
async def reload_model(caller: Admin, s: ServicesDep, given: ReloadIn | None = None) -> ModelOut:
    """Load the model directory again (e.g. after ``triage retrain`` promoted a candidate) and
    switch to it between micro-batches: requests in flight finish on the old model."""
    directory = Path(given.model_dir) if given and given.model_dir else s.settings.model_dir
    try:
        engine = await run_in_threadpool(Engine.load, directory, s.settings.review_threshold,
                                         s.settings.runtime)
    except (ModelLoadError, ValueError, OSError) as err:  # OSError: e.g. a name too long
        raise HTTPException(422, f"model not reloaded, the old one keeps serving: {err}") from None
    if engine.classifier.schema != s.schema:
        raise HTTPException(422, f"model not reloaded: {directory} answers in other heads or labels "
                                 "than the stored letters; restart the service on a new store instead")
    s.worker.engine = engine

    def switch_linking() -> None:  # waits for the matter lock: off the event loop
        with s.matters.lock, s.store.session() as session:
            s.matters.use_model(session, engine.scorer, engine.vector_space)

    await run_in_threadpool(switch_linking)
    s.settings.model_dir = directory
    logger.info("model reloaded: %s from %s by key %d", engine.version, directory, caller.key_id)
    return _model_out(s)


@router.get("/v1/export", tags=["admin"], response_class=StreamingResponse, responses={
    200: {"content": {"application/x-ndjson": {}}, "description": "one JSON object per line"},
    **API_ERRORS})
async def export(caller: Admin, s: ServicesDep) -> StreamingResponse:
    """Reviewed letters as training JSONL in the corpus format (id, title, text, one field per
    head, group, source): ``triage train --data`` reads it as it is."""

    def lines() -> Iterator[bytes]:
        with s.store.session() as session:
            for record in export_records(session, s.schema):
                yield (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")

    logger.info("export requested by key %d", caller.key_id)
    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"Content-Disposition": 'attachment; filename="reviewed.jsonl"'})


@router.get("/v1/keys", response_model=list[KeyOut], tags=["admin"], responses=API_ERRORS)
async def get_keys(caller: Admin, s: ServicesDep) -> list[KeyOut]:
    """Every key (without the key itself, which is never stored)."""

    def read() -> list[KeyOut]:
        with s.store.session() as session:
            return [KeyOut.model_validate(k, from_attributes=True) for k in list_keys(session)]

    return await run_in_threadpool(read)


@router.post("/v1/keys", response_model=KeyOut, status_code=201, tags=["admin"],
             responses={**API_ERRORS, **POST_ERRORS})
async def post_key(given: KeyIn, caller: Admin, s: ServicesDep) -> KeyOut:
    """A new key; the answer holds the key itself, shown this once."""

    def make() -> KeyOut:
        with s.store.writing() as session:
            row, key = create_key(session, given.name, given.role)
            return KeyOut.model_validate(row, from_attributes=True).model_copy(update={"key": key})

    made = await run_in_threadpool(make)
    logger.info("key %d (%s) created by key %d", made.id, made.role, caller.key_id)
    return made


@router.delete("/v1/keys/{key_id}", response_model=KeyOut, tags=["admin"],
               responses={**API_ERRORS, **error_responses(404)})
async def delete_key(key_id: RowId, caller: Admin, s: ServicesDep, request: Request) -> KeyOut:
    """Revoke a key: it stops working at once; its row stays for the audit trail."""

    def revoke() -> KeyOut | None:
        with s.store.writing() as session:
            row = revoke_key(session, key_id)
            return None if row is None else KeyOut.model_validate(row, from_attributes=True)

    revoked = await run_in_threadpool(revoke)
    if revoked is None:
        raise HTTPException(404, f"no key {key_id}")
    logger.info("key %d revoked by key %d", key_id, caller.key_id)
    return revoked
