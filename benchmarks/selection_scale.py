"""Selection at scale: N seeded synthetic patch-mean vectors through the selection.

    python -m benchmarks.selection_scale [--sizes 1e6 1e7 1e8] [--k 1000]
    python -m benchmarks.selection_scale --smoke        # 1e5, seconds

Each size runs in its own subprocess (so peak RSS is its own), three ways:
- ``faiss``: today's build path, ``retrieval.top_k`` with the exact flat index over all N means
  held in memory at once (float64, as the scan gathers them), plus generating them;
- ``streamed``: ``retrieval.streamed_top_k`` over blocks of 1e6 generated one at a time, holding
  at most K candidates (the design issue 13 moves the build to); equality with ``faiss`` is checked;
- ``ivf``: recall@K of the IVF index (default nlist 64, nprobe 8) against exact search over 32
  pool points as queries (``retrieval.ivf_recall``), with its wall time.
Means are uniform in [0, 255)^3 from numpy's PCG64 seeded by block; target (145.24, 151.52, 151.44)
(RoadScene's). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import machine

BLOCK = 1_000_000
TARGET = np.array([145.24, 151.52, 151.44])


def _blocks(n: int):
    for first in range(0, n, BLOCK):
        yield np.random.default_rng(first // BLOCK).random((min(BLOCK, n - first), 3)) * 255.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _one(n: int, k: int, way: str) -> dict:
    from crossfuse.align.config import BuildParams
    from crossfuse.align.retrieval import ivf_recall, streamed_top_k, top_k

    t = time.perf_counter()
    if way == "streamed":
        sel = streamed_top_k(_blocks(n), TARGET, k)
        out = {"seconds": time.perf_counter() - t}
    else:
        means = np.concatenate(list(_blocks(n)))
        generated = time.perf_counter()
        if way == "faiss":
            sel = top_k(means, TARGET, BuildParams(k=k))
            out = {"seconds": time.perf_counter() - t, "generate_seconds": generated - t}
        else:
            recall = ivf_recall(means, BuildParams(k=k, index="ivf"))
            return {"seconds": time.perf_counter() - generated, "recall": recall, "peak_rss_mb": _peak_mb()}
    out.update(peak_rss_mb=_peak_mb(), ids_sha=hashlib.sha256(sel.ids.astype(np.int64).tobytes()).hexdigest(), kth_distance=float(sel.distances[-1]))
    return out


def _run(n: int, k: int, way: str) -> dict:
    code = f"import json; from benchmarks.selection_scale import _one; print(json.dumps(_one({n}, {k}, {way!r})))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8])
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    sizes = [100_000] if args.smoke else [int(s) for s in args.sizes]
    rows = []
    for n in sizes:
        row = {"n": n, "k": args.k}
        for way in ("streamed", "faiss", "ivf"):
            row[way] = _run(n, args.k, way)
        same = row["streamed"]["ids_sha"] == row["faiss"]["ids_sha"]
        row["streamed_equals_faiss"] = same and row["streamed"]["kth_distance"] == row["faiss"]["kth_distance"]
        if not row["streamed_equals_faiss"]:
            raise SystemExit(f"streamed and FAISS selections differ at N = {n}: {row}")
        rows.append(row)
    result = {"benchmark": "selection_scale", "machine": machine(), "block": BLOCK, "rows": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
