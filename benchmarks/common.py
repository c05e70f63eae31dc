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


def metric_timings(parts: list[dict], images: int, *, digits: int = 2) -> dict:
    """What the metric-speed benchmarks (``vifb_speed``, ``tang_speed``) report from their
    per-image parts (each with ``pixels``, ``read_s`` and per-metric seconds ``ours_s`` and
    ``baseline_s``): totals over ``images`` fused images, per image and per metric (each metric's
    seconds rounded to ``digits``), and, where the baseline ran, the speed-ups."""
    def totals(key: str) -> dict[str, float]:
        sums: dict[str, float] = {}
        for part in parts:
            for name, seconds in part[key].items():
                sums[name] = sums.get(name, 0.0) + seconds
        return {name: round(s, digits) for name, s in sorted(sums.items(), key=lambda kv: -kv[1])}

    ours, baseline = totals("ours_s"), totals("baseline_s")
    out = {"megapixels": round(sum(p["pixels"] for p in parts) / 1e6, 2),
           "read_s": round(sum(p["read_s"] for p in parts), 2),
           "ours_s": round(sum(ours.values()), 2), "ours_per_image_s": round(sum(ours.values()) / images, 4),
           "ours_by_metric_s": ours}
    if baseline:
        total = sum(baseline.values())
        out.update(baseline_s=round(total, 2), baseline_per_image_s=round(total / images, 4),
                   baseline_by_metric_s=baseline, speedup=round(total / sum(ours.values()), 1),
                   speedup_by_metric={k: round(baseline[k] / ours[k], 1) for k in ours})
    return out
