"""What a running service holds: settings, store, model worker, matter index, metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from model.labels import LabelSchema
from serving.cases import Matters
from serving.engine import Engine, ModelWorker
from serving.observability import Metrics
from serving.settings import ServiceSettings
from serving.store import Store


@dataclass
class Services:
    settings: ServiceSettings
    store: Store
    worker: ModelWorker
    matters: Matters
    metrics: Metrics

    @property
    def engine(self) -> Engine:
        return self.worker.engine

    @property
    def schema(self) -> LabelSchema:
        return self.worker.engine.classifier.schema


def services(request: Request) -> Services:
    """The running service's parts (a FastAPI dependency)."""
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(services)]
