"""The process's malloc (glibc's; elsewhere these change nothing and say so where it matters).

Two concerns, one allocator:

- Freed memory is reused, not faulted in anew. A forward pass allocates activations of tens of MB
  (EfficientNet-Lite0, batch 16: up to 77 MB in fp32) and frees them at its end. Left as it is,
  glibc gives such blocks back to the kernel at once: blocks over its mmap threshold (at most
  32 MB, adjusted as it goes) are unmapped on free, the top of the heap is trimmed past 128 kB,
  and a thread other than the main one (the service's model thread) works in an arena of 64 MB
  heaps that are unmapped when empty. So every pass faults its memory in again: measured here
  1,200-2,700 page faults and 3-6 ms of kernel time an image (``benchmarks/embedding_speed.py``
  compares both). ``keep_freed_memory`` puts every thread on the main heap, serves blocks up to
  ``KEEP_BYTES`` from it and trims its free top only past ``KEEP_BYTES``.
- Memory is still returned after a large photo. One arena for every thread also means a service
  whose worker threads each decode a 40-megapixel photo in turn does not grow by one picture per
  thread; ``return_free_memory`` hands whole free pages back after such a decode.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

log = logging.getLogger(__name__)

KEEP_BYTES = 256 << 20  # above the largest activation of a batch of 16 in fp32, with room
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt parameters (malloc.h)


@cache  # looked up once: it runs after every large decode
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """One arena for every thread, blocks up to ``KEEP_BYTES`` from the heap, and at most that much
    freed memory kept for reuse. Call at start-up, before other threads exist. False (and a log
    line) where the C library refuses it, which leaves the allocator as it was."""
    libc = _libc()
    settings = {"arena max": (_M_ARENA_MAX, 1), "mmap threshold": (_M_MMAP_THRESHOLD, KEEP_BYTES),
                "trim threshold": (_M_TRIM_THRESHOLD, KEEP_BYTES)}
    if libc is None or not hasattr(libc, "mallopt"):
        log.info("malloc not tuned: no C library with mallopt; inference faults its memory in anew each pass")
        return False
    refused = [name for name, (param, value) in settings.items() if libc.mallopt(param, value) != 1]
    if refused:
        log.info("malloc: the C library refused %s; inference faults its memory in anew each pass", ", ".join(refused))
        return False
    return True


def return_free_memory() -> None:
    """Hand whole free pages of every arena back to the system."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
