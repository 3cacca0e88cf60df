"""Freed tensor memory kept in the process heap while everything mode runs on a CPU.

Each decoder batch allocates tensors of tens of MB (``B x 4096 x 256`` fp32 image tokens, the
upscaled masks, full-size logits) and frees them before the next batch. glibc's ``malloc`` serves
blocks above ``M_MMAP_THRESHOLD`` (at most 32 MiB on 64-bit) with ``mmap`` and returns them with
``munmap`` when freed, so every batch maps fresh pages, faults each one in and has the kernel
zero it. Measured on dog.jpg at 32 x 32 points with MobileSAM, the fast decoder, 2 cores at
load 1.2-2.0: 26.8 s with the system heap, 18.5 s with it kept (``benchmarks/everything_speed.py``);
in a separate pair of single runs 23.6 s of a 37.0 s call was system time (CPU seconds summed
over both threads), 0.1 s of 21.6 s with the heap kept.

:func:`reuse_freed_memory` sets ``mallopt(M_MMAP_MAX, 0)`` (large blocks come from the heap) and a
high ``M_TRIM_THRESHOLD`` (freed heap is not given back), so the next batch reuses pages already
mapped. glibc's settings are process-wide: while a scope is open they hold for every thread of
the process, not only the caller's. On leaving, ``malloc_trim(0)`` returns the free memory to the
system and the settings become those glibc's own dynamic policy reaches after its first large
free (``M_MMAP_THRESHOLD`` 32 MiB, its maximum on 64-bit, ``M_TRIM_THRESHOLD`` twice that;
``mallopt`` cannot hand the dynamic policy back, and glibc cannot report the old values). This is
the remedy of PyTorch's CPU performance tuning guide (a caching allocator such as jemalloc or
tcmalloc through ``LD_PRELOAD``), scoped to the call, since a library cannot choose its host
process's allocator.

It does nothing on anything but glibc (macOS, Windows, musl), nor when the process's allocator
was configured from the environment (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``, ``LD_PRELOAD``
of another allocator): that choice is the user's. Nested and concurrent scopes are counted: the
settings change when the first opens and when the last closes.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["reuse_freed_memory", "supported"]

# glibc <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
DEFAULT_MMAP_MAX = 65536
ADAPTED_MMAP_THRESHOLD = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
ADAPTED_TRIM_THRESHOLD = 2 * ADAPTED_MMAP_THRESHOLD  # as glibc's dynamic policy sets it
KEEP_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
ENVIRONMENT = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TOP_PAD_",
    "MALLOC_ARENA_MAX",
    "GLIBC_TUNABLES",
)

_lock = threading.Lock()
_active = 0
_accepted = False
_libc: Any = None
_probed = False


def _glibc() -> Any:
    """The C library through ctypes when it is glibc, else None."""
    global _libc, _probed
    if not _probed:
        _probed = True
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl does not)
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                libc.mallopt.restype = ctypes.c_int
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.malloc_trim.restype = ctypes.c_int
                _libc = libc
            except (OSError, AttributeError):
                _libc = None
    return _libc


def supported() -> bool:
    """Whether :func:`reuse_freed_memory` can act here (Linux with glibc)."""
    return _glibc() is not None


def configured_by_environment(environ: dict[str, str] | None = None) -> bool:
    """Whether the user set the allocator up from the environment (left alone then)."""
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in ENVIRONMENT):
        return True
    preload = env.get("LD_PRELOAD", "")
    return any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc"))


@contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Keep freed large blocks in the heap inside the ``with`` block; give them back after.

    Args:
        enabled: False makes this a no-op (``perception.reuse_memory = false``).

    Yields:
        Whether the heap policy is in force: False when disabled, not on glibc, when the
        environment configured the allocator, or when glibc refused a setting (``mallopt``
        returns 0).
    """
    global _active, _accepted
    libc = _glibc() if enabled and not configured_by_environment() else None
    if libc is None:
        yield False
        return
    with _lock:
        if _active == 0:
            _accepted = libc.mallopt(M_MMAP_MAX, 0) == 1
            _accepted = libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD) == 1 and _accepted
        _active += 1
    try:
        yield _accepted
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_MMAP_THRESHOLD, ADAPTED_MMAP_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, ADAPTED_TRIM_THRESHOLD)
                libc.malloc_trim(0)
