"""The server's micro-batcher (runtime/scheduler.py) on a model stand-in that records its runs: a short
request waits for at most the run in progress, however many long requests are queued before it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bert14.encode import Encoded
from bert14.runtime.classifier import Prediction
from bert14.runtime.scheduler import BatchLimits, FairBatcher

LONG, TITLE = 512, 12  # tokens of a window and of a title


def _rows(count: int, length: int, tag: int) -> list[Encoded]:
    return [Encoded([tag] * length, [0] * length, False) for _ in range(count)]


class Recorder:
    """A model whose runs are recorded and whose first run is held until released."""

    def __init__(self) -> None:
        self.runs: list[list[int]] = []  # each run's rows, by tag
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, rows):  # noqa: ANN001, ANN204
        if not self.runs:
            self.started.set()
            self.release.wait(30)
        self.runs.append([row.ids[0] for row in rows])
        answer = Prediction("a", 1.0, {"a": 1.0}, False, 1)
        yield list(range(len(rows))), [answer] * len(rows)


@pytest.mark.parametrize("long_requests", [3, 12, 40])
def test_a_title_waits_for_at_most_the_run_in_progress(long_requests: int) -> None:
    limits = BatchLimits(window_ms=0, max_batch_texts=64, max_batch_tokens=4096)

    async def scenario() -> list[list[int]]:
        model = Recorder()
        batcher = FairBatcher(model, limits, lambda rows: None)
        batcher._execute = _per_run(batcher, model)  # type: ignore[method-assign]
        batcher.start()
        longs = [asyncio.create_task(batcher.submit(_rows(17, LONG, tag))) for tag in range(long_requests)]
        await asyncio.to_thread(model.started.wait, 30)  # the first run is in progress, the rest queued
        title = asyncio.create_task(batcher.submit(_rows(1, TITLE, -1)))
        await asyncio.sleep(0.05)
        model.release.set()
        await title
        await asyncio.gather(*longs)
        await batcher.stop()
        return model.runs

    runs = asyncio.run(scenario())
    title_run = next(i for i, run in enumerate(runs) if -1 in run)
    assert title_run == 1, f"the title ran in run {title_run}, behind {title_run - 1} runs queued after it"
    assert all(len(run) * max(TITLE if tag == -1 else LONG for tag in run) <= 4096 for run in runs)
    done = sorted(tag for run in runs for tag in run if tag >= 0)
    assert done == sorted(list(range(long_requests)) * 17), "every long row ran once"


def _per_run(batcher: FairBatcher, model: Recorder):  # noqa: ANN202
    """_execute with the whole run handed to the model at once (the real one splits it by length)."""

    def execute(loop, picked):  # noqa: ANN001, ANN202
        for positions, answers in model([job.rows[index] for job, index in picked]):
            done = [(picked[p], answer) for p, answer in zip(positions, answers, strict=True)]
            loop.call_soon_threadsafe(batcher._deliver, done)

    return execute
