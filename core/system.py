"""Facts about the machine that both the writer and the reader need."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may use (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
