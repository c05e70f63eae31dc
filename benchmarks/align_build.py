"""Align build against the released procedure (a) and the decode floor (b).

    python -m benchmarks.align_build [--scales 1 10] [--repeats 3] [--baseline-scales 1] [--build-args ...]

Workload: RoadScene (target) x the MSRS subset (auxiliary) from ../shared/datasets, P=64, S=200,
K=800, the auxiliary manifest replicated 1x, 10x (and 30x on request). Per scale, medians of
``--repeats`` runs of:
- ours: `crossfuse-align build` in a subprocess: the command's wall time (interpreter start and
  imports included, about 0.9 s here), peak RSS by GNU time, and the build's own total as the
  command reports it (from opening the store to finalising it: what the floor is compared with),
  and the store folder's size sampled every 50 ms (its peak: scratch included), against the
  finished store plus K raw patches (K x P x P x 4 bytes: what issue 13 bounds the peak by);
  ``--build-args`` are passed on to the command (e.g. ``--low-scratch``);
- floor: every input image (target and auxiliary, visible and infrared) decoded once by Pillow on
  the same number of threads as our workers;
- released: benchmarks.released_align (one run; only at ``--baseline-scales``, it is slow).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from benchmarks.common import MANIFESTS, machine, replicated_manifest, scratch_dir
from crossfuse import manifest as _manifest
from crossfuse.system import available_cores


def _folder_mb(path: str) -> float:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:  # a temporary file renamed or removed while we looked
                pass
    return total / 1e6


K, PATCH = 800, 64


def _ours(target: str, aux: str, out: str, extra: list[str]) -> tuple[float, float, float, float, float]:
    """Wall, peak RSS (MiB), the build's own total (s), and the store folder's peak and final
    size (MB; scratch included, sampled every 50 ms while the command runs)."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "crossfuse.cli.align", "build", "-q", "-t", target,
           "-a", aux, "-o", out, "-k", str(K), *extra]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _folder_mb(out))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"build failed: {stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1)) / 1024
    build = float(re.search(r"total ([0-9.]+)s", stdout).group(1))
    final = _folder_mb(out)
    return wall, rss, build, max(peak, final), final


def _decode_all(paths: list[str], workers: int) -> None:
    def decode(path: str) -> None:
        with Image.open(path) as im:
            im.load()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(decode, paths))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-scales", type=int, nargs="*", default=[1])
    ap.add_argument("--build-args", nargs="*", default=[], help="more arguments for crossfuse-align build")
    args = ap.parse_args()
    workers = available_cores()
    target_path = str(MANIFESTS / "roadscene.json")
    target = _manifest.load(target_path)
    results = []
    with scratch_dir() as tmp:
        for scale in args.scales:
            aux_path = replicated_manifest("msrs", scale, tmp)
            aux = _manifest.load(aux_path)
            files = [m.url(getattr(p, side)) for m in (target, aux) for p in m.pairs for side in ("vis", "ir")]
            megabytes = sum(os.path.getsize(f) for f in files) / 1e6
            runs = []
            for i in range(args.repeats):  # a fresh output each run: deleting the last one is not timed
                runs.append(_ours(target_path, aux_path, os.path.join(tmp, f"x{scale}-{i}.zarr"), args.build_args))
                shutil.rmtree(os.path.join(tmp, f"x{scale}-{i}.zarr"))
            ours = sorted(r[0] for r in runs)[len(runs) // 2]
            ours_build = sorted(r[2] for r in runs)[len(runs) // 2]
            rss = max(r[1] for r in runs)
            store_peak, store_final = max(r[3] for r in runs), max(r[4] for r in runs)
            floor_runs = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                _decode_all(files, workers)
                floor_runs.append(time.perf_counter() - t)
            floor = sorted(floor_runs)[len(floor_runs) // 2]
            patches = 1118 + 1629 * scale
            row = {"aux_replication": scale, "input_files": len(files), "input_mb": round(megabytes, 1),
                   "ours_command_s": round(ours, 2), "ours_build_s": round(ours_build, 2),
                   "ours_peak_rss_mib": round(rss, 1), "store_peak_mb": round(store_peak, 1),
                   "store_final_mb": round(store_final, 1),
                   "store_bound_mb": round(store_final + K * PATCH * PATCH * 4 / 1e6, 1), "floor_s": round(floor, 2),
                   "build_over_floor": round(ours_build / floor, 2), "command_over_floor": round(ours / floor, 2),
                   "patches_per_s": round(patches / ours_build), "input_mb_per_s": round(megabytes / ours_build, 1)}
            if scale in args.baseline_scales:
                from benchmarks import released_align

                t = time.perf_counter()
                released_align.run(target, aux, os.path.join(tmp, f"released_x{scale}"))
                released = time.perf_counter() - t
                row.update(released_s=round(released, 2), command_speedup_vs_released=round(released / ours, 2))
            results.append(row)
    base = next((r for r in results if r["aux_replication"] == 1), None)
    big = next((r for r in results if r["aux_replication"] == 10), None)
    out = {"command": "python -m benchmarks.align_build " + " ".join(sys.argv[1:]), "machine": machine(),
           "workers": workers, "results": results}
    if base and big:
        out["rss_growth_10x"] = round(big["ours_peak_rss_mib"] / base["ours_peak_rss_mib"], 3)
    top = next((r for r in results if r["aux_replication"] == 30), None)
    if big and top:
        out["store_peak_30x_over_10x"] = round(top["store_peak_mb"] / big["store_peak_mb"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
