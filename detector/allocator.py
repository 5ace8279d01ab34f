"""Keep the model's working memory mapped between forward passes (glibc's malloc only).

A forward pass allocates activations of tens of MB (EfficientNet-Lite0, batch 16: up to 77 MB in
fp32) and frees them at its end. glibc gives such blocks back to the kernel at once: blocks over
its mmap threshold (at most 32 MB, adjusted as it goes) are unmapped on free, the top of the heap
is trimmed past 128 kB, and a thread other than the main one (the service's model thread) works in
an arena of 64 MB heaps. So every pass faults its memory in again: measured here, 1,200-2,700 page
faults and 3-6 ms of kernel time an image, the embedder in a worker thread at 0.55-0.65 of its
speed with the memory kept (``benchmarks/embedding_speed.py`` compares both).

``keep_freed_memory`` makes every thread allocate from the main heap, serves blocks up to
``KEEP_BYTES`` from it and trims its free top only past ``KEEP_BYTES``: a process keeps at most
that much freed memory for reuse. Larger blocks (a huge decoded photo) are still unmapped on free.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

KEEP_BYTES = 256 << 20  # above the largest activation of a batch of 16 in fp32, with room
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt parameters, <malloc.h>


def keep_freed_memory() -> bool:
    """Tune this process's malloc so that inference reuses its memory; False (and a log line) where
    the C library is not glibc, which leaves the allocator as it is."""
    if platform.libc_ver()[0] != "glibc":
        log.info("allocator not tuned: the C library is not glibc; inference faults its memory in anew each pass")
        return False
    libc = ctypes.CDLL(None)
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, KEEP_BYTES), (_M_TRIM_THRESHOLD, KEEP_BYTES))
    refused = [name for name, (param, value) in zip(("arena max", "mmap threshold", "trim threshold"), settings)
               if libc.mallopt(param, value) != 1]
    if refused:
        log.warning("allocator: glibc refused %s; inference faults its memory in anew each pass", ", ".join(refused))
        return False
    return True
