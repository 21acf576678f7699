"""The FastAPI application: intake API, review queue and page, admin routes.

Run it with ``triage serve`` (or ``uvicorn serving.app:create_app --factory``); settings
come from ``TRIAGE_*`` environment variables (see ``serving/settings.py``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from threadpoolctl import threadpool_limits

from serving import admin, intake, page, review
from serving.cases import Matters
from serving.engine import Engine, ModelWorker, Overloaded
from serving.keys import create_key, has_admin
from serving.limits import RequestLimits
from serving.observability import AccessLog, Metrics
from serving.services import Services
from serving.settings import ServiceSettings
from serving.store import Store

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 2


def open_store(settings: ServiceSettings) -> Store:
    """The configured store (an SQLite file's folder is created: it is the service's own)."""
    url = make_url(settings.store_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    store = Store(settings.store_url)
    key = settings.bootstrap_admin_key
    if key is not None:
        with store.session() as session:
            if not has_admin(session):
                create_key(session, "bootstrap admin", "admin", key.get_secret_value())
                logger.info("bootstrap admin key stored (hashed)")
    return store


def _errors_without_input(err: RequestValidationError) -> list[dict[str, object]]:
    """Validation errors without the rejected input (it may be letter text)."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in err.errors()]


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The service; the model and store are opened when it starts (lifespan)."""
    settings = settings or ServiceSettings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # numpy's BLAS would use every core for linking's one matrix-vector product and
        # then spin, taking the cores from the model's runtime (setting TRIAGE_BLAS_THREADS)
        with threadpool_limits(limits=settings.blas_threads, user_api="blas"):
            store = open_store(settings)
            engine = Engine.load(settings.model_dir, settings.review_threshold, settings.runtime)
            worker = ModelWorker(engine, settings.micro_batch, settings.max_pending)
            matters = Matters(store, engine.scorer, engine.vector_space, settings.search_threads)
            app.state.services = Services(settings, store, worker, matters, metrics)
            worker.start()
            logger.info("service ready: model %s, store %s", engine.version, store.url)
            try:
                yield
            finally:
                await worker.stop()
                store.close()

    app = FastAPI(title="信访举报件 triage", version="1", lifespan=lifespan,
                  description="Classify complaint letters (sector, violations, repeat), link letters "
                              "about one matter, and review the unsure ones.")
    app.include_router(intake.router)
    app.include_router(review.router)
    app.include_router(admin.router)
    app.include_router(page.router)
    page.mount_static(app)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _errors_without_input(err)}, status_code=422)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, err: Overloaded) -> JSONResponse:
        return JSONResponse({"detail": f"overloaded ({err}); retry in {RETRY_AFTER_SECONDS} s"},
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(OperationalError)
    async def store_down(request: Request, err: OperationalError) -> JSONResponse:
        logger.error("store unreachable: %s", type(err.orig).__name__)
        return JSONResponse({"detail": "the store is unreachable; nothing was stored, retry later"},
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    app.add_middleware(RequestLimits, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog, metrics=metrics)
    return app
