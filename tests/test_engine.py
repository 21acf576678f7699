"""The model worker: micro-batches of concurrent letters, a bounded queue, errors that
reach the callers without stopping the worker."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.engine import ModelWorker, Overloaded


class SlowEngine:
    """Stands in for the model: records its batches, answers each text with its length."""

    def __init__(self, seconds: float = 0.05, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.seconds = seconds
        self.fail_on = fail_on

    def analyse(self, texts: list[str]) -> list[int]:
        self.batches.append(list(texts))
        time.sleep(self.seconds)
        if self.fail_on in texts:
            raise RuntimeError("model failed")
        return [len(t) for t in texts]


def run(coroutine):  # noqa: ANN001, ANN201 - test helper
    return asyncio.run(coroutine)


def test_concurrent_letters_share_micro_batches_and_keep_their_answers() -> None:
    engine = SlowEngine()

    async def main() -> list[list[int]]:
        worker = ModelWorker(engine, micro_batch=4, max_pending=100)  # type: ignore[arg-type]
        worker.start()
        answers = await asyncio.gather(*(worker.analyse(["x" * i]) for i in range(1, 11)))
        await worker.stop()
        return answers

    answers = run(main())
    assert answers == [[i] for i in range(1, 11)]
    assert max(len(b) for b in engine.batches) == 4 and len(engine.batches) < 10


def test_a_full_queue_refuses_at_once() -> None:
    async def main() -> None:
        worker = ModelWorker(SlowEngine(seconds=0.3), micro_batch=1, max_pending=2)  # type: ignore[arg-type]
        worker.start()
        first = asyncio.ensure_future(worker.analyse(["a"]))
        await asyncio.sleep(0.05)  # the worker holds "a"; two places are free
        waiting = asyncio.ensure_future(worker.analyse(["b", "c"]))
        await asyncio.sleep(0)
        started = time.perf_counter()
        with pytest.raises(Overloaded, match="2 letters are waiting"):
            await worker.analyse(["d"])
        assert time.perf_counter() - started < 0.05
        assert await first == [1] and await waiting == [1, 1]
        await worker.stop()

    run(main())


def test_a_failing_batch_reaches_its_callers_and_the_worker_goes_on() -> None:
    async def main() -> None:
        worker = ModelWorker(SlowEngine(seconds=0.0, fail_on="bad"), micro_batch=1,  # type: ignore[arg-type]
                             max_pending=10)
        worker.start()
        with pytest.raises(RuntimeError, match="model failed"):
            await worker.analyse(["bad"])
        assert await worker.analyse(["good"]) == [4]
        await worker.stop()

    run(main())
