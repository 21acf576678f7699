"""The model side of the service: a loaded classifier and linker, and a worker that
gathers concurrent requests into micro-batches so the event loop never waits for the
model and a burst gets a clear 503 instead of unbounded latency."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from model.inference import Classifier, ModelLoadError, Runtime
from model.keyfields import KeyFields, extract_key_fields
from model.linking import LINKER_FILE, PairScorer
from model.matter import MATTER_DIR, MatterEncoder, MatterEncoderError

logger = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """More letters are waiting for the model than the service accepts."""


@dataclass
class Analysis:
    """What the model and the key-field extractor say about one letter."""

    answer: dict[str, Any]
    key_fields: KeyFields
    vector: np.ndarray
    vector_space: str  # which encoder made ``vector`` (Engine.vector_space)


class Engine:
    """A classifier, and the linker fitted with it (the default scorer if none was).

    Args:
        classifier: the loaded model.
        scorer: the linker fitted for this model, or None for the default weights.
        review_threshold: overrides the model's own review threshold when set.
        matter: the matter encoder whose vectors the scorer reads (else the classifier's).
    """

    def __init__(self, classifier: Classifier, scorer: PairScorer | None,
                 review_threshold: float | None = None, matter: MatterEncoder | None = None) -> None:
        if review_threshold is not None:
            classifier.calibration.review_threshold = review_threshold
        self.classifier = classifier
        self.scorer = scorer or PairScorer()
        self.linker_fitted = scorer is not None
        self.matter = matter

    @classmethod
    def load(cls, model_dir: Path, review_threshold: float | None = None,
             runtime: Runtime = Runtime.TORCH) -> Engine:
        """Load a model directory (raises ``ModelLoadError`` with the reason if it is unusable)."""
        classifier = Classifier.load(model_dir, runtime)
        linker = model_dir / LINKER_FILE
        scorer = PairScorer.load(linker) if linker.is_file() else None
        try:
            matter = (MatterEncoder.load(model_dir / MATTER_DIR, runtime)
                      if (model_dir / MATTER_DIR).is_dir() else None)
        except MatterEncoderError as err:
            raise ModelLoadError(str(err)) from None
        logger.info("model %s loaded from %s (runtime %s, linker: %s)", classifier.version, model_dir,
                    runtime, ("fitted, with a matter encoder" if matter else "fitted") if scorer
                    else "default")
        return cls(classifier, scorer, review_threshold, matter)

    @property
    def version(self) -> str:
        return self.classifier.version

    @property
    def vector_space(self) -> str:
        """Names the encoder whose vectors linking reads: vectors from two encoders are not
        comparable, so every stored vector records it."""
        if self.matter is not None and self.matter.version:
            return self.matter.version
        return f"classifier-{self.classifier.version}"

    def vectors(self, texts: list[str]) -> np.ndarray:
        """The vectors linking reads: the matter encoder's, or without one the classifier's."""
        return self.matter.vectors(texts) if self.matter is not None else self.classifier.run(texts)[1]

    def analyse(self, texts: list[str]) -> list[Analysis]:
        """Calibrated answers, key fields and vectors of letters (blocking; run it in a thread)."""
        logits, vectors = self.classifier.run(texts)
        if self.matter is not None:
            vectors = self.matter.vectors(texts)
        answers = self.classifier.answers(self.classifier.probabilities(logits))
        return [Analysis(a, extract_key_fields(t), v, self.vector_space)
                for a, t, v in zip(answers, texts, vectors, strict=True)]


@dataclass
class _Job:
    text: str
    done: asyncio.Future[Analysis]


class ModelWorker:
    """One consumer that takes up to ``micro_batch`` waiting letters at a time and runs the
    engine on them in a thread. At most ``max_pending`` letters wait; more raise Overloaded.

    The engine is read at each batch, so a reload takes effect without dropping requests.
    """

    def __init__(self, engine: Engine, micro_batch: int, max_pending: int) -> None:
        self.engine = engine
        self.micro_batch = micro_batch
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_pending)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="model-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def pending(self) -> int:
        return self.queue.qsize()

    async def analyse(self, texts: list[str]) -> list[Analysis]:
        """Analyse letters; raises Overloaded at once when they do not fit in the queue."""
        if self.queue.maxsize - self.queue.qsize() < len(texts):
            raise Overloaded(f"{self.queue.qsize()} letters are waiting for the model")
        loop = asyncio.get_running_loop()
        jobs = [_Job(t, loop.create_future()) for t in texts]
        for job in jobs:
            self.queue.put_nowait(job)
        return list(await asyncio.gather(*(job.done for job in jobs)))

    async def _run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            while len(jobs) < self.micro_batch and not self.queue.empty():
                jobs.append(self.queue.get_nowait())
            engine = self.engine
            try:
                results = await anyio.to_thread.run_sync(engine.analyse, [j.text for j in jobs])
            except Exception as err:  # noqa: BLE001 - the callers get the error, the worker lives on
                logger.exception("model failed on a batch of %d letters", len(jobs))
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(err)
                continue
            for job, result in zip(jobs, results, strict=True):
                if not job.done.done():
                    job.done.set_result(result)
