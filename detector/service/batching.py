"""Micro-batching: concurrent checks share one model forward pass.

Requests put their preprocessed images on a queue; one worker takes up to ``max_batch``
images (waiting at most ``max_wait_ms`` for the batch to fill), runs the model once in a
dedicated thread so the event loop never blocks, and hands each request its rows. How much work
may wait is admission control's to decide (``service/admission.py``), before decoding.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

import torch

from detector.compute import ComputeThread
from detector.embedder import Embeddings
from detector.errors import OverloadedError

EmbedFn = Callable[[torch.Tensor], Embeddings]


@dataclass
class _Job:
    batch: torch.Tensor
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, embed: EmbedFn, *, compute: ComputeThread, max_batch: int, max_wait_ms: float, enabled: bool = True,
                 on_batch: Callable[[int], None] | None = None):
        self._embed = embed
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.enabled = enabled
        self._on_batch = on_batch or (lambda size: None)
        self._jobs: list[_Job] = []
        self._queued_images = 0
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task | None = None
        # The one model thread: the forward pass already uses every core through intra-op threads.
        self._compute = compute

    @property
    def queued_images(self) -> int:
        return self._queued_images

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._worker = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(OverloadedError("the service is shutting down"))

    async def embed(self, batch: torch.Tensor) -> Embeddings:
        n = int(batch.shape[0])
        loop = asyncio.get_running_loop()
        self._queued_images += n
        try:
            if not self.enabled:
                self._on_batch(n)
                return await asyncio.wrap_future(self._compute.submit(self._embed, batch))
            job = _Job(batch, loop.create_future())
            self._jobs.append(job)
            self._wakeup.set()
            return await job.future
        finally:
            self._queued_images -= n

    def embed_blocking(self, batch: torch.Tensor) -> Embeddings:
        """``embed`` for a worker thread (the check pipeline runs in one): queues on the event loop and waits."""
        return asyncio.run_coroutine_threadsafe(self.embed(batch), self._loop).result()

    def _take(self) -> list[_Job]:
        taken, size = [], 0
        while self._jobs and (not taken or size + self._jobs[0].batch.shape[0] <= self.max_batch):
            job = self._jobs.pop(0)
            taken.append(job)
            size += int(job.batch.shape[0])
        return taken

    def _pending_images(self) -> int:
        return sum(int(j.batch.shape[0]) for j in self._jobs)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            deadline = time.monotonic() + self.max_wait
            while self._pending_images() < self.max_batch and (remaining := deadline - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                    self._wakeup.clear()
                except asyncio.TimeoutError:
                    break
            while self._jobs:
                jobs = [j for j in self._take() if not j.future.done()]
                if not jobs:
                    continue
                batch = torch.cat([j.batch for j in jobs])
                self._on_batch(int(batch.shape[0]))
                try:
                    out = await asyncio.wrap_future(self._compute.submit(self._embed, batch))
                except Exception as exc:  # hand the failure to every waiting request
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                start = 0
                for job in jobs:
                    end = start + int(job.batch.shape[0])
                    if not job.future.done():
                        job.future.set_result(out.rows(start, end))
                    start = end
