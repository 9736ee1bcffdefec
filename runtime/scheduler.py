"""The server's micro-batcher: concurrent requests share model runs, and none can starve another.

    request A (256 long texts) --tokenize--> rows A0..A255 ┐
    request B (1 title)        --tokenize--> row  B0       ┼-> batch 1: A0..A15 + B0   (round robin,
    request C (3 titles)       --tokenize--> rows C0..C2   ┘   batch 2: A16..  + C..    rows and
                                                                ...                     tokens capped)

Every request is tokenized on arrival and joins a queue of jobs. Each model run takes rows from
the waiting jobs in turn, the least served first, one row per job per round, until the run holds
`max_batch_texts` rows or `max_batch_tokens` padded tokens, so a large request is cut into model-sized
runs with the others' rows interleaved. A request that arrives while a run is in progress has had no
row yet, so it leads the next run: a one-title request waits for at most the run in progress (at
most `max_batch_tokens` padded tokens), however many large requests are queued.
The first job opens a window of `window_ms` for others to join; jobs that queued while a run was
in progress have waited already and go at once.

A run's rows go to the model in groups of similar length, shortest first, and each group's answers
are handed back as soon as it is done, so a title that shares a run with long texts is answered
when its own group is done, not when the run is. A run
that fails is retried job by job, so only the job whose rows fail gets the error; the others get
their answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bert14.encode import Encoded
from bert14.runtime.classifier import Prediction

log = logging.getLogger("bert14.server")

# Rows in, (positions, predictions) out per length bucket as each finishes (Classifier.predict_buckets).
Runner = Callable[[Sequence[Encoded]], Iterable[tuple[list[int], list[Prediction]]]]


@dataclass(frozen=True)
class BatchLimits:
    window_ms: float = 5.0  # how long the first waiting request holds the door open for others
    max_batch_texts: int = 64  # rows per model run
    max_batch_tokens: int = 4096  # padded tokens (rows x longest row) per model run
    interleave: bool = True  # False: each run holds rows of one request only (no micro-batching)


@dataclass(eq=False)
class _Job:
    rows: list[Encoded]
    future: asyncio.Future
    arrived: float
    taken: int = 0  # rows handed to runs so far
    answers: dict[int, Prediction] = field(default_factory=dict)

    @property
    def waiting(self) -> bool:
        return self.taken < len(self.rows) and not self.future.done()


# Rows whose lengths are within this factor of each other (or all short) share a model call.
SIMILAR_LENGTH_FACTOR = 2
SHORT_ROW_TOKENS = 64


def _similar_lengths(picked: list[tuple[_Job, int]]) -> list[list[tuple[_Job, int]]]:
    """The run's rows split into groups of similar length, shortest group first."""
    ordered = sorted(picked, key=lambda pair: len(pair[0].rows[pair[1]].ids))
    groups: list[list[tuple[_Job, int]]] = []
    shortest = 0
    for pair in ordered:
        length = len(pair[0].rows[pair[1]].ids)
        if groups and (length <= SHORT_ROW_TOKENS or length <= SIMILAR_LENGTH_FACTOR * shortest):
            groups[-1].append(pair)
        else:
            groups.append([pair])
            shortest = length
    return groups


class FairBatcher:
    def __init__(self, run: Runner, limits: BatchLimits, observe: Callable[[int], None]) -> None:
        self.run = run
        self.limits = limits
        self.observe = observe  # rows per model run, for /metrics
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bert14-infer")
        self.jobs: deque[_Job] = deque()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, rows: list[Encoded]) -> list[Prediction]:
        if not rows:
            return []
        loop = asyncio.get_running_loop()
        job = _Job(rows, loop.create_future(), loop.time())
        self.jobs.append(job)
        self.wakeup.set()
        try:
            return await job.future
        finally:
            job.future.cancel()  # a client that went away: its remaining rows are skipped

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not any(job.waiting for job in self.jobs):
                self.jobs.clear()
                self.wakeup.clear()
                await self.wakeup.wait()
            await self._hold_window(loop)
            picked = self._pick()
            self.observe(len(picked))
            await self._run(loop, picked)

    async def _hold_window(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until the oldest waiting job's window closes or a run's worth of rows is waiting."""
        if not self.limits.interleave:
            return
        oldest = min(job.arrived for job in self.jobs if job.waiting)
        deadline = oldest + self.limits.window_ms / 1000
        while loop.time() < deadline:
            rows = sum(len(job.rows) - job.taken for job in self.jobs if job.waiting)
            if rows >= self.limits.max_batch_texts:
                return
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                return

    def _pick(self) -> list[tuple[_Job, int]]:
        """(job, row index) pairs for one run: one row per job per round, within the limits, the jobs
        served least so far first and, among those, the ones with fewest rows left. A title that has
        just arrived therefore leads the next run, however many long jobs are queued: it waits for the
        run in progress only. (Taking jobs in arrival order, a title behind 12 requests of 17 windows
        waited 16 runs.)"""
        waiting = (job for job in self.jobs if job.waiting)
        self.jobs = deque(sorted(waiting, key=lambda job: (job.taken, len(job.rows) - job.taken)))
        picked: list[tuple[_Job, int]] = []
        longest = 0
        while len(picked) < self.limits.max_batch_texts:
            progressed = False
            for job in [j for j in self.jobs if j.waiting]:
                if picked and not self.limits.interleave and job is not picked[0][0]:
                    continue
                length = max(longest, len(job.rows[job.taken].ids))
                if picked and length * (len(picked) + 1) > self.limits.max_batch_tokens:
                    return picked
                picked.append((job, job.taken))
                job.taken += 1
                longest, progressed = length, True
                if len(picked) == self.limits.max_batch_texts:
                    break
            if not progressed:
                break
        return picked

    def _execute(self, loop: asyncio.AbstractEventLoop, picked: list[tuple[_Job, int]]) -> None:
        """In the model's thread: run the rows in groups of similar length, shortest first, and hand
        each length bucket's answers to the event loop as soon as it is done: a title that shares a
        run with long texts is neither padded to their length nor kept waiting for them."""
        for group in _similar_lengths(picked):
            for positions, answers in self.run([job.rows[index] for job, index in group]):
                done = [(group[p], answer) for p, answer in zip(positions, answers, strict=True)]
                loop.call_soon_threadsafe(self._deliver, done)

    def _deliver(self, done: list[tuple[tuple[_Job, int], Prediction]]) -> None:
        for (job, index), answer in done:
            self._answer(job, index, answer)

    async def _run(self, loop: asyncio.AbstractEventLoop, picked: list[tuple[_Job, int]]) -> None:
        try:
            await loop.run_in_executor(self.executor, self._execute, loop, picked)
        except Exception:
            await asyncio.sleep(0)  # let answers already handed over land first
            unanswered = [(job, index) for job, index in picked if index not in job.answers]
            log.warning(
                "a run of %d rows failed; retrying its %d unanswered rows request by request",
                len(picked),
                len(unanswered),
            )
            await self._isolate(loop, unanswered)

    async def _isolate(self, loop: asyncio.AbstractEventLoop, picked: list[tuple[_Job, int]]) -> None:
        by_job: dict[_Job, list[int]] = {}
        for job, index in picked:
            by_job.setdefault(job, []).append(index)
        for job, indices in by_job.items():
            if job.future.done():
                continue
            subset = [(job, index) for index in indices]
            try:
                await loop.run_in_executor(self.executor, self._execute, loop, subset)
            except Exception as exc:  # this request's own rows fail: it alone gets the error
                if not job.future.done():
                    job.future.set_exception(exc)

    @staticmethod
    def _answer(job: _Job, index: int, answer: Prediction) -> None:
        if job.future.done():
            return
        job.answers[index] = answer
        if len(job.answers) == len(job.rows):
            job.future.set_result([job.answers[i] for i in range(len(job.rows))])
