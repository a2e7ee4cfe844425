"""Keep freed memory in the process heap, so the hot loop's large temporaries stop page-faulting.

glibc serves every allocation above its mmap threshold (128 KiB, adapting up to 32 MiB) with a
fresh ``mmap`` and returns it with ``munmap`` when freed, and trims the heap top above 128 KiB.
A perturbation metric allocates and frees batches of tens of MiB thousands of times, so each
chunk is paid for again in page faults: on this project's 2-core machine RISE spent as much CPU
time in the kernel as in the model (12.1 s user + 13.0 s sys for two images, 7.3 M minor faults;
0.0 s sys and 12.6 k faults with the memory kept). This is the effect ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` or a jemalloc/tcmalloc preload gives, set from inside the process.
The price: memory freed by the run stays reserved by the process until it exits.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: the largest value mallopt accepts (an int); blocks above 2 GiB are still mmap'ed
KEEP = 2**31 - 1
KEPT = "glibc: freed memory kept in the heap (mmap and trim thresholds 2 GiB)"
_kept = False  # mallopt settings last for the process: a later job of a sweep inherits them


def keep_freed_memory() -> str:
    """Raise glibc's mmap and trim thresholds; returns what was done, for the run record."""
    global _kept
    if not sys.platform.startswith("linux"):
        return f"system ({sys.platform}: not glibc)"
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "system (no glibc mallopt)"
    if mallopt(M_MMAP_THRESHOLD, KEEP) != 1 or mallopt(M_TRIM_THRESHOLD, KEEP) != 1:
        return "system (mallopt refused)"
    _kept = True
    return KEPT


def allocator_state() -> str:
    """What a job that did not ask for :func:`keep_freed_memory` runs with (earlier jobs may have)."""
    return f"{KEPT}, set by an earlier job of this process" if _kept else "system"
