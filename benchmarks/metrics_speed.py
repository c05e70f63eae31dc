"""Seconds per image of the twelve protocol metrics: ours against a straightforward scipy
implementation of the same definitions (``benchmarks/scipy_metrics.py``).

    python -m benchmarks.metrics_speed [--repeats 3] [--smoke]

Needs scipy and ../shared/reference (``--smoke``: the bundled record, cut to 96x128, one
repeat). Both are timed on the same images, already read, in one process, in turn within each
repeat; ours with torch's default threads (2 here) and with one thread, as the single-threaded
baseline runs and as each ``crossfuse eval`` worker process runs; medians of the repeats. Every value of the baseline is
checked against ours (relative 1e-6).
Also reports, per record, the official evaluator's seconds recorded beside its values in
metrics_reference.json, and the wall time of ``crossfuse eval``'s parallel path over all records.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from benchmarks import scipy_metrics
from benchmarks.common import REPO, machine
from crossfuse.fusion.evaluate import _single_threaded, score
from crossfuse.fusion.metrics import all_metrics, read_gray
from crossfuse.system import available_cores

REFERENCE = REPO.parent / "shared" / "reference" / "metrics"
DATASETS = REPO.parent / "shared" / "datasets"
SAMPLE = REPO / "data_manifests" / "sample" / "metrics"


def _records(smoke: bool) -> list[dict]:
    """Reference records with absolute paths (fused, ir, vis) and the official evaluator's seconds:
    the shared ones, or for ``smoke`` the first bundled one."""
    base = SAMPLE if smoke else REFERENCE
    records = json.loads((base / "metrics_reference.json").read_text())[:1 if smoke else None]
    sources = SAMPLE if smoke else DATASETS
    return [{"name": r["fused"], "paths": [str(base / r["fused"]), str(sources / r["ir"]), str(sources / r["vis"])],
             "official_s": r["seconds"]} for r in records]


def _interleaved(f, a, b, repeats: int) -> tuple[float, float, float]:
    """Median seconds of ours (default threads), ours on one thread (as the single-threaded
    baseline runs, and as each ``crossfuse eval`` worker runs) and the scipy baseline, timed in
    turn within each repeat so that this shared machine's slow spells hit all three alike."""
    times: list[list[float]] = [[], [], []]
    threads = torch.get_num_threads()
    for _ in range(repeats):
        ours = lambda: all_metrics(fused=f, ir=a, vis=b)  # noqa: E731
        baseline = lambda: scipy_metrics.all_metrics(f, a, b)  # noqa: E731
        for k, (fn, n) in enumerate(((ours, threads), (ours, 1), (baseline, threads))):
            torch.set_num_threads(n)
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    torch.set_num_threads(threads)
    return tuple(statistics.median(t) for t in times)


def _agree(ours: dict[str, float], theirs: dict[str, float]) -> bool:
    return all(math.isclose(ours[k], theirs[k], rel_tol=1e-6, abs_tol=1e-9) for k in ours)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="the bundled record cut to 96x128, one repeat")
    args = ap.parse_args(argv)
    repeats = 1 if args.smoke else args.repeats
    rows = []
    for rec in _records(args.smoke):
        f, a, b = (read_gray(p) for p in rec["paths"])
        if args.smoke:
            f, a, b = (x[:96, :128] for x in (f, a, b))
        all_metrics(fused=f, ir=a, vis=b)  # warm-up
        ours, ours_1, baseline = _interleaved(f, a, b, repeats)
        if not _agree(all_metrics(fused=f, ir=a, vis=b), scipy_metrics.all_metrics(f, a, b)):
            raise SystemExit(f"{rec['name']}: the scipy baseline and ours disagree; fix one before timing.")
        row = {"fused": rec["name"], "shape": list(f.shape), "ours_s": round(ours, 4),
               "ours_1_thread_s": round(ours_1, 4), "scipy_s": round(baseline, 4),
               "speedup_vs_scipy": round(baseline / ours, 1), "speedup_vs_scipy_1_thread": round(baseline / ours_1, 1)}
        if rec["official_s"] and not args.smoke:
            row.update(official_recorded_s=round(rec["official_s"], 3),
                       speedup_vs_official_recorded=round(rec["official_s"] / ours, 1))
        rows.append(row)
    out = {"command": "python -m benchmarks.metrics_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine(), "repeats": repeats, "records": rows,
           "median_speedup_vs_scipy": statistics.median(r["speedup_vs_scipy"] for r in rows),
           "median_speedup_vs_scipy_1_thread": statistics.median(r["speedup_vs_scipy_1_thread"] for r in rows),
           "total_ours_s": round(sum(r["ours_s"] for r in rows), 3),
           "total_scipy_s": round(sum(r["scipy_s"] for r in rows), 3)}
    if not args.smoke:
        records = _records(False)
        workers = available_cores()
        t = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers, initializer=_single_threaded) as pool:
            list(pool.map(score, *zip(*(r["paths"] for r in records))))
        parallel = time.perf_counter() - t
        official = sum(r["official_s"] for r in records)
        out.update(parallel_workers=workers, parallel_eval_reading_included_s=round(parallel, 3),
                   official_recorded_total_s=round(official, 3),
                   parallel_speedup_vs_official=round(official / parallel, 1))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
