"""Seconds to score VIFB's published fused images under VIFB's protocol: ours
(``crossfuse.fusion.metrics.vifb``) against a straightforward port of VIFB's MATLAB code
(``benchmarks/scipy_vifb.py``; VIFB publishes no timing of its own metric run to compare with).

    python -m benchmarks.vifb_speed [--methods N] [--workers 2] [--skip-baseline] [--no-eval] [--smoke]

Needs scipy and ../shared (the 21 VIFB pairs and ../shared/reference/vifb/fused, 12 methods).
Each image is read once, then scored by ours and by the baseline in turn, metric by metric, in the
same process (one thread each: torch's FFTs and numpy; ``--workers`` processes share the images
out, and both sides see the same contention). Every value of the baseline is checked against ours
(relative 1e-9) and every one of ours against VIFB's printed value (5 significant digits). Sums
are CPU seconds per metric over all images. Also times the leaderboard command itself,
``crossfuse eval --fused <the 12 methods> --protocol vifb``, end to end in a fresh process, reading
included. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.common import MANIFESTS, REPO, machine, metric_timings

ORACLE = REPO.parent / "shared" / "reference" / "vifb"
PAIRS = REPO.parent / "shared" / "datasets" / "VIFB"


def _printed(tsv: Path) -> dict[tuple[str, str], dict[str, float]]:
    values: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    with open(tsv, newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            values[(row["image"], row["method"])][row["metric"]] = float(row["value"])
    return values


def _score(image: str, methods: list[str], baseline: bool) -> dict:
    """Read one pair and its fused images, then :func:`_time_sides` on them."""
    from crossfuse.fusion.metrics import vifb

    t = time.perf_counter()
    vis, ir = vifb.read(str(PAIRS / "vis" / f"{image}.jpg")), vifb.read(str(PAIRS / "ir" / f"{image}.jpg"))
    fused = {m: vifb.read(str(ORACLE / "fused" / m / f"{image}.jpg")) for m in methods}
    read_s = time.perf_counter() - t
    return dict(_time_sides(vis, ir, fused, baseline), read_s=read_s)


def _time_sides(vis, ir, fused: dict, baseline: bool) -> dict:
    """Ours and the baseline on each fused image, in turn, metric by metric, on one thread:
    seconds per metric and the values."""
    import torch

    from benchmarks import scipy_vifb
    from crossfuse.fusion.metrics import vifb

    torch.set_num_threads(1)
    out = {"ours_s": defaultdict(float), "baseline_s": defaultdict(float), "ours": {}, "baseline": {},
           "pixels": vis.shape[0] * vis.shape[1] * len(fused)}
    sides = [("ours", vifb.FUNCTIONS_BY_NAME)] + ([("baseline", scipy_vifb.FUNCTIONS)] if baseline else [])
    for m, f in fused.items():
        for side, functions in sides:
            values = {}
            for name in vifb.NAMES:
                t = time.perf_counter()
                values[name] = float(functions[name](vis=vis, ir=ir, fused=f) if side == "ours"
                                     else functions[name](vis, ir, f))
                out[f"{side}_s"][name] += time.perf_counter() - t
            out[side][m] = values
    return out


def _smoke() -> dict:
    """A bundled RoadScene pair cut to 96 x 128 (colour visible, gray infrared) and a plain
    maximum fusion of it, through both sides once; raises if they disagree."""
    import numpy as np

    from crossfuse.fusion.metrics import vifb

    root = REPO / "data_manifests" / "sample" / "roadscene"
    vis, ir = (vifb.read(str(root / kind / "FLIR_00006.jpg"))[:96, :128] for kind in ("vis", "ir"))
    part = _time_sides(vis, ir, {"max": np.maximum(vis, ir[..., None])}, True)
    wrong = _check("FLIR_00006", part, None)
    if wrong:
        raise SystemExit(f"the baseline and ours disagree: {wrong}")
    return {"command": "python -m benchmarks.vifb_speed --smoke", "shape": list(vis.shape),
            "ours_s": round(sum(part["ours_s"].values()), 4), "baseline_s": round(sum(part["baseline_s"].values()), 4),
            "values": part["ours"]["max"]}


def _check(image: str, part: dict, printed: dict | None) -> list[str]:
    """What disagrees: the baseline with ours beyond 1e-9, ours with VIFB's printed digits
    (where ``printed`` is given)."""
    from crossfuse.fusion.metrics import vifb

    wrong = []
    for method, ours in part["ours"].items():
        for name, value in ours.items():
            if printed is not None and float(f"{value:.5g}") != printed[(image, method)][vifb.FUNCTIONS[name]]:
                wrong.append(f"{image}/{method} {name}: ours {value:.6g}, VIFB printed")
            theirs = part["baseline"].get(method, {}).get(name)
            if theirs is not None and not math.isclose(value, theirs, rel_tol=1e-9, abs_tol=1e-12):
                wrong.append(f"{image}/{method} {name}: ours {value!r}, baseline {theirs!r}")
    return wrong


def _leaderboard_seconds(methods: list[str]) -> float:
    """Wall seconds of the leaderboard command over ``methods``, in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="crossfuse-bench-") as tmp:
        for m in methods:
            (Path(tmp) / "fused" / m).parent.mkdir(exist_ok=True)
            (Path(tmp) / "fused" / m).symlink_to(ORACLE / "fused" / m)
        cmd = [sys.executable, "-m", "crossfuse.cli.main", "eval", "--fused", str(Path(tmp) / "fused"),
               "--pairs", str(MANIFESTS / "vifb.json"), "--protocol", "vifb", "--json", str(Path(tmp) / "b.json"),
               "-q"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", type=int, default=12, help="the first N of the 12 methods (by name)")
    ap.add_argument("--workers", type=int, default=2, help="processes sharing the images out")
    ap.add_argument("--skip-baseline", action="store_true", help="time ours only (and still check VIFB's digits)")
    ap.add_argument("--no-eval", action="store_true", help="do not time the leaderboard command")
    ap.add_argument("--smoke", action="store_true", help="a bundled pair cut to 96x128, both sides once (no ../shared)")
    args = ap.parse_args(argv)
    if args.smoke:
        out = _smoke()
        print(json.dumps(out))
        return out
    printed = _printed(ORACLE / "values.tsv")
    methods = sorted({m for _, m in printed})[:args.methods]
    images = sorted({i for i, _ in printed})
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        parts = list(pool.map(_score, images, [methods] * len(images), [not args.skip_baseline] * len(images)))
    wrong = [w for image, part in zip(images, parts) for w in _check(image, part, printed)]
    if wrong:
        raise SystemExit(f"{len(wrong)} disagreements, e.g. {wrong[:5]}")
    n = len(images) * len(methods)
    out = {"command": "python -m benchmarks.vifb_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine(), "images": n, "methods": methods, "values_checked": n * 13, **metric_timings(parts, n)}
    if not args.no_eval:
        out["leaderboard_command_s"] = round(_leaderboard_seconds(methods), 2)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
