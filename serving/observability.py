"""Metrics (Prometheus) and the access log. Log lines carry methods, routes, statuses,
durations and letter/key ids: never letter text, names, phone or ID numbers."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("serving.access")


class Metrics:
    """The service's metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("triage_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("triage_request_seconds", "request latency", ["route"],
                                 registry=self.registry,
                                 buckets=(.005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10))
        self.predictions = Counter("triage_predictions_total", "predicted labels", ["head", "label"],
                                   registry=self.registry)
        self.classified = Counter("triage_letters_classified_total", "letters classified",
                                  registry=self.registry)
        self.to_review = Counter("triage_letters_to_review_total", "letters sent to review",
                                 registry=self.registry)
        self.review_rate = Gauge("triage_review_rate", "share of classified letters sent to review",
                                 registry=self.registry)
        self.queue_depth = Gauge("triage_model_queue_depth", "letters waiting for the model",
                                 registry=self.registry)
        self._counts = {"classified": 0, "to_review": 0}

    def count_prediction(self, labels: dict[str, Any], needs_review: bool) -> None:
        for head, value in labels.items():
            for label in value if isinstance(value, list) else [value]:
                self.predictions.labels(head, str(label).lower() if isinstance(label, bool) else label).inc()
        self.classified.inc()
        self._counts["classified"] += 1
        if needs_review:
            self.to_review.inc()
            self._counts["to_review"] += 1
        self.review_rate.set(self._counts["to_review"] / self._counts["classified"])


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class AccessLog:
    """ASGI middleware: one log line and the metrics of every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            seconds = time.perf_counter() - start
            route = _route(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            state = scope.get("state", {})
            caller = state.get("caller")
            logger.info("%s %s %d %.1fms key=%s letter=%s", scope["method"], route, status,
                        seconds * 1000, caller.key_id if caller else "-", state.get("letter_id", "-"))
