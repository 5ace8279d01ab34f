"""One thread runs a process's model, so that the process has one OpenMP team.

torch's CPU kernels run on an OpenMP team that belongs to the thread calling them. A service calls
torch from many threads: the model's, the loader's, each request thread's transforms. Once the
process holds more OpenMP threads than cores, libgomp stops its threads spinning between parallel
regions (``GOMP_SPINCOUNT``), and every region then waits for its threads to wake: measured here,
the model on a compute thread ran batch 16 in bf16 1.20x and batch 1 in fp32 2.2x faster with one
team than with two (``benchmarks/embedding_speed.py``).

``ComputeThread.run`` runs a function on the one thread (inline when called from it).
``take_intra_op_threads`` gives that thread the process's intra-op threads and leaves every other
thread, the caller and threads started later, one thread of its own: no team.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


class ComputeThread:
    def __init__(self, *, threads: int | None = None):
        """``threads``: intra-op threads of the compute thread; by default torch's, as any new thread."""
        self._ident: int | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model", initializer=self._start,
                                           initargs=(threads,))
        self._executor.submit(lambda: None).result()  # started now, so that its thread count is set first

    def _start(self, threads: int | None) -> None:
        self._ident = threading.get_ident()
        if threads is not None:
            import torch

            torch.get_num_threads()  # torch's lazy per-thread set-up, which would later take the process default
            torch.set_num_threads(threads)

    def run(self, fn: Callable[..., T], /, *args, **kwargs) -> T:
        if threading.get_ident() == self._ident:
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()

    def submit(self, fn: Callable[..., T], /, *args, **kwargs) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


def take_intra_op_threads() -> ComputeThread:
    """A compute thread with torch's intra-op threads; the calling thread, and every thread started
    after, then runs torch's kernels on itself alone. Call at start-up, before other threads use torch."""
    import torch

    compute = ComputeThread(threads=torch.get_num_threads())
    torch.set_num_threads(1)  # this thread's, and the default a new thread takes on its first kernel
    return compute
