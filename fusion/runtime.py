"""Process-wide settings for running the network on the CPU, applied by the commands (never on import).

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
returns it on free, so each of the network's large activations (hundreds of MB at 640x480) is
zero-filled by the kernel again on every use. On 2 cores that made a 640x480 fusion spend more
time in page faults than in arithmetic (45 s, 53 s of it system time, against 17 s once freed
memory is kept; measured with ``python -m benchmarks.network_cpu``).
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from the heap and keep freed memory for reuse instead of
    unmapping it. Returns False (changing nothing) where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
