"""Dynamic micro-batching: concurrent requests are queued and run as one model call in a dedicated model thread,
bounded by max_batch images and max_wait seconds counted from the oldest request's arrival. Each job keeps the model
object it was admitted with, so a hot reload never fails a queued request."""

import asyncio
import contextlib
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dermpipe.serving.models import ServedModel
from dermpipe.serving.settings import ServingError, tf_error_detail

log = logging.getLogger("dermpipe.serve")


@dataclass
class _Job:
    model: ServedModel
    images: list[np.ndarray]  # decoded pixels, one [S, S, 3] array per image (serving.images.check_image)
    future: asyncio.Future
    enqueued: float
    metas: list[dict | None] | None = None  # per image; only a metadata-fusion model reads them


class MicroBatcher:
    """Queue of prediction jobs run as batches: one model call per batch, in one dedicated model thread.

    A batch waits for more jobs (at most max_wait_s after its first) only while requests are on their way: announced
    with `arriving()` (being validated) and not yet submitted. A lone request is not held back for company that is
    not coming."""

    def __init__(self, max_batch: int, max_wait_s: float, observe=None, observe_failure=None) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._carry: _Job | None = None
        self._task: asyncio.Task | None = None
        self._observe = observe or (lambda size, seconds: None)
        self._observe_failure = observe_failure or (lambda size: None)
        self.on_the_way = 0  # requests inside arriving(): admitted, not yet submitted

    @contextlib.contextmanager
    def arriving(self):
        """Wrap a request's work before submit() (validation): batches being collected wait for it."""
        self.on_the_way += 1
        try:
            yield
        finally:
            self.on_the_way -= 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=True)

    async def submit(self, model: ServedModel, images: list[np.ndarray],
                     metas: list[dict | None] | None = None) -> tuple[np.ndarray, ...]:
        """The model's outputs (each an array with one row per image) for these images."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        await self.queue.put(_Job(model, images, future, loop.time(), metas))
        return await future

    async def _collect(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        first, self._carry = self._carry or await self.queue.get(), None
        jobs, size = [first], len(first.images)
        deadline = first.enqueued + self.max_wait_s
        while size < self.max_batch:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0 or self.on_the_way == 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(job.images) > self.max_batch:
                self._carry = job
                break
            jobs.append(job)
            size += len(job.images)
        return jobs

    async def _loop(self) -> None:
        while True:
            jobs = await self._collect()
            groups: dict[int, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(id(job.model), []).append(job)
            for group in groups.values():
                try:
                    await self._run(group)
                except Exception as err:  # noqa: BLE001 - the batch loop must survive anything
                    log.exception("batch failed: %s", err)
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(err)

    async def _run(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        images = [image for job in jobs for image in job.images]
        predict = jobs[0].model.predict
        if getattr(jobs[0].model, "metadata_inputs", False):
            metas = [meta for job in jobs for meta in (job.metas or [None] * len(job.images))]
            predict = functools.partial(predict, metas=metas)
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self.executor, predict, images)
        except Exception as err:  # noqa: BLE001
            self._observe_failure(len(images))
            if len(jobs) > 1:  # isolate the job that broke the batch; the others still get answers
                for job in jobs:
                    await self._run([job])
                return
            if not jobs[0].future.done():
                jobs[0].future.set_exception(_model_error(err))
            return
        self._observe(len(images), time.perf_counter() - started)
        offset = 0
        for job in jobs:
            n = len(job.images)
            if not job.future.done():  # a client that went away cancelled its future
                job.future.set_result(tuple(output[offset:offset + n] for output in outputs))
            offset += n


def _model_error(err: Exception) -> Exception:
    """A TF argument error in a job run alone is that request's input's fault (4xx); anything else stays a 5xx."""
    import tensorflow as tf

    if isinstance(err, tf.errors.InvalidArgumentError):
        return ServingError(422, f"the model refused this request's input: {tf_error_detail(err)}")
    return err
