"""Shared pieces of the benchmarks: timing, the machine, the workloads on ../shared/datasets."""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from crossfuse.system import available_cores

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "data_manifests"


def machine() -> dict:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return {"cpu": model, "cores": available_cores(), "python": platform.python_version()}


def sync(device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a timing covers it."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def replicated_manifest(name: str, times: int, directory: str) -> str:
    """A manifest listing every pair of ``data_manifests/<name>.json`` ``times`` times (new ids),
    with an absolute root; returns its path."""
    doc = json.loads((MANIFESTS / f"{name}.json").read_text())
    root = str((MANIFESTS / doc["root"]).resolve())
    pairs = [dict(p, id=f"r{k}/{p['id']}") for k in range(times) for p in doc["pairs"]]
    path = Path(directory) / f"{name}_x{times}.json"
    path.write_text(json.dumps({"name": f"{doc['name']}-x{times}", "root": root, "pairs": pairs}))
    return str(path)


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="crossfuse-bench-")
