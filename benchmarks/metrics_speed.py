"""Seconds per image of the twelve protocol metrics on the reference records.

    python -m benchmarks.metrics_speed [--repeats 3]

Needs ../shared/reference. Prints one JSON line: per record, our median seconds (one process,
reading included) and the official evaluator's seconds recorded beside its values in
metrics_reference.json, and their ratio; plus the wall time of `crossfuse eval`'s parallel path
over all ten records.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor

from benchmarks.common import REPO, median_seconds
from crossfuse.fusion.evaluate import _single_threaded, score
from crossfuse.system import available_cores

REFERENCE = REPO.parent / "shared" / "reference" / "metrics"
DATASETS = REPO.parent / "shared" / "datasets"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    records = json.loads((REFERENCE / "metrics_reference.json").read_text())
    jobs = [(str(REFERENCE / r["fused"]), str(DATASETS / r["ir"]), str(DATASETS / r["vis"])) for r in records]
    score(*jobs[0])  # warm-up
    rows = []
    for rec, job in zip(records, jobs):
        ours = median_seconds(lambda: score(*job), args.repeats)
        rows.append({"fused": rec["fused"], "shape": rec["shape"], "ours_s": round(ours, 4),
                     "official_s": round(rec["seconds"], 3), "speedup": round(rec["seconds"] / ours, 1)})
    workers = available_cores()
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, initializer=_single_threaded) as pool:
        list(pool.map(score, *zip(*jobs)))
    parallel = time.perf_counter() - t
    official_total = sum(r["seconds"] for r in records)
    print(json.dumps({"command": "python -m benchmarks.metrics_speed", "records": rows,
                      "sequential_total_s": round(sum(r["ours_s"] for r in rows), 3),
                      "official_total_s": round(official_total, 3),
                      "parallel_workers": workers, "parallel_total_s": round(parallel, 3),
                      "parallel_speedup": round(official_total / parallel, 1)}))


if __name__ == "__main__":
    main()
