"""Returning memory to the system: glibc keeps freed heap in per-thread arenas, so a service whose
worker threads each decode a 40-megapixel photo in turn would grow by one full picture per thread.
Elsewhere than glibc these are no-ops."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


@cache  # looked up once: it runs after every large decode
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None


def limit_malloc_arenas(count: int) -> None:
    """At most ``count`` malloc arenas for the process: threads share them, so freed memory is reused.
    Call at start-up, before the worker threads exist."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_ARENA_MAX, count)


def return_free_memory() -> None:
    """Hand whole free pages of every arena back to the system."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
