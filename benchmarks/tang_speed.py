"""Seconds to score the oracle's fused images under Tang's toolbox (today's version): ours
(``crossfuse.fusion.metrics.tang``) against a straightforward numpy/scipy port of its MATLAB code
(``benchmarks/scipy_tang.py``; the toolbox publishes no timing, and its per-pixel MATLAB loops are
what makes it slow there).

    python -m benchmarks.tang_speed [--workers 2] [--skip-baseline] [--no-eval] [--smoke]

Needs scipy and ../shared/reference/tang (5 methods x 21 TNO pairs). Each image is read once,
then scored by ours and by the baseline in turn, metric by metric, in the same process (one
thread each; ``--workers`` processes share the images out, and both sides see the same
contention). Every value of the baseline is checked against ours (relative 1e-9; VIF 1e-6, whose
filter sums run in another order) and every one of ours against the oracle's (the same
tolerances). Also times the leaderboard command, ``crossfuse eval --protocol tang`` over the five
method folders, end to end in a fresh process, reading included. Prints one JSON line.
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

from benchmarks.common import REPO, machine, metric_timings

ORACLE = REPO.parent / "shared" / "reference" / "tang"


def _tolerance(name: str) -> float:
    return 1e-6 if name == "VIF" else 1e-9


def _oracle() -> dict[tuple[str, str], dict[str, float]]:
    with open(ORACLE / "values_tang_octave.csv", newline="") as fh:
        return {(r["image"], r["method"]): {k: float(v) for k, v in r.items() if k not in ("method", "image")}
                for r in csv.DictReader(fh)}


def _score(image: str, methods: list[str], baseline: bool) -> dict:
    """Read one pair and its fused images, then :func:`_time_sides` on them."""
    from crossfuse.fusion.metrics import tang

    t = time.perf_counter()
    ir, vis = (tang.read(str(ORACLE / "sources" / kind / image)) for kind in ("ir", "vi"))
    fused = {m: tang.read(str(ORACLE / "fused" / m / image)) for m in methods}
    read_s = time.perf_counter() - t
    return dict(_time_sides(ir, vis, fused, baseline), read_s=read_s)


def _ours(name: str):
    """Today's toolbox metric ``name`` from crossfuse's module, as (ir, vis, fused) -> float."""
    from crossfuse.fusion.metrics import tang as T

    def scaled(fn):
        return lambda a, b, f: fn(T._scaled(a), T._scaled(b), T._scaled(f))

    return {"EN": lambda a, b, f: T._en(f), "SF": lambda a, b, f: T._sf(T._scaled(f)),
            "SD": lambda a, b, f: T._sd(T._scaled(f)), "MSE": scaled(lambda a, b, f: T._mse(a / 255, b / 255, f / 255)),
            "PSNR": scaled(lambda a, b, f: T._psnr(T._mse(a / 255, b / 255, f / 255))), "MI": T._mi,
            "VIF": scaled(T._vif), "AG": lambda a, b, f: T._ag(T._scaled(f)), "CC": scaled(T._cc),
            "SCD": scaled(T._scd), "Qabf": scaled(T._qabf)}[name]


def _theirs(name: str):
    from benchmarks import scipy_tang as S

    def scaled(fn):
        return lambda a, b, f: fn(a / 255.0 * 255.0, b / 255.0 * 255.0, f / 255.0 * 255.0)

    return {"EN": lambda a, b, f: S.entropy(f), "SF": lambda a, b, f: S.sf(f / 255.0 * 255.0),
            "SD": lambda a, b, f: S.sd(f / 255.0 * 255.0), "MSE": scaled(S.mse), "PSNR": scaled(S.psnr), "MI": S.mi,
            "VIF": scaled(lambda a, b, f: S.vifp_mscale(a, f) + S.vifp_mscale(b, f)),
            "AG": lambda a, b, f: S.ag(f / 255.0 * 255.0), "CC": scaled(S.cc), "SCD": scaled(S.scd),
            "Qabf": scaled(S.qabf)}[name]


def _time_sides(ir, vis, fused: dict, baseline: bool) -> dict:
    """Ours and the baseline on each fused image, in turn, metric by metric, on one thread:
    seconds per metric and the values."""
    import torch

    from crossfuse.fusion.metrics import tang

    torch.set_num_threads(1)
    out = {"ours_s": defaultdict(float), "baseline_s": defaultdict(float), "ours": {}, "baseline": {},
           "pixels": ir.size * len(fused)}
    sides = [("ours", _ours)] + ([("baseline", _theirs)] if baseline else [])
    for m, f in fused.items():
        for side, pick in sides:
            values = {}
            for name in tang.NAMES:
                fn = pick(name)
                t = time.perf_counter()
                values[name] = float(fn(ir, vis, f))
                out[f"{side}_s"][name] += time.perf_counter() - t
            out[side][m] = values
    return out


def _check(image: str, part: dict, oracle: dict | None) -> list[str]:
    """What disagrees: the baseline with ours, ours with the oracle (where ``oracle`` is given)."""
    wrong = []
    for method, ours in part["ours"].items():
        for name, value in ours.items():
            tol = _tolerance(name)
            if oracle is not None and not math.isclose(value, oracle[(image, method)][name], rel_tol=tol):
                wrong.append(f"{image}/{method} {name}: ours {value!r}, oracle {oracle[(image, method)][name]!r}")
            theirs = part["baseline"].get(method, {}).get(name)
            if theirs is not None and not math.isclose(value, theirs, rel_tol=tol, abs_tol=1e-12):
                wrong.append(f"{image}/{method} {name}: ours {value!r}, baseline {theirs!r}")
    return wrong


def _smoke() -> dict:
    """A bundled RoadScene pair cut to 96 x 128 and a plain mean fusion of it, through both
    sides once; raises if they disagree."""
    import numpy as np

    from crossfuse.fusion.metrics import tang

    root = REPO / "data_manifests" / "sample" / "roadscene"
    ir, vis = (tang.read(str(root / kind / "FLIR_00006.jpg"))[:96, :128] for kind in ("ir", "vis"))
    mean = ((ir.astype(np.int64) + vis + 1) // 2).astype(np.uint8)
    part = _time_sides(ir, vis, {"mean": mean}, True)
    wrong = _check("FLIR_00006", part, None)
    if wrong:
        raise SystemExit(f"the baseline and ours disagree: {wrong}")
    return {"command": "python -m benchmarks.tang_speed --smoke", "shape": list(ir.shape),
            "ours_s": round(sum(part["ours_s"].values()), 4), "baseline_s": round(sum(part["baseline_s"].values()), 4),
            "values": part["ours"]["mean"]}


def _leaderboard_seconds() -> float:
    """Wall seconds of ``crossfuse eval --protocol tang`` over the five method folders, fresh process."""
    with tempfile.TemporaryDirectory(prefix="crossfuse-bench-") as tmp:
        cmd = [sys.executable, "-m", "crossfuse.cli.main", "eval", "--fused", str(ORACLE / "fused"), "--pairs",
               str(ORACLE / "sources"), "--protocol", "tang", "--json", str(Path(tmp) / "b.json"), "-q"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="processes sharing the images out")
    ap.add_argument("--skip-baseline", action="store_true", help="time ours only (and still check the oracle)")
    ap.add_argument("--no-eval", action="store_true", help="do not time the leaderboard command")
    ap.add_argument("--smoke", action="store_true", help="a bundled pair cut to 96x128, both sides once (no ../shared)")
    args = ap.parse_args(argv)
    if args.smoke:
        out = _smoke()
        print(json.dumps(out))
        return out
    oracle = _oracle()
    methods = sorted({m for _, m in oracle})
    images = sorted({i for i, _ in oracle})
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        parts = list(pool.map(_score, images, [methods] * len(images), [not args.skip_baseline] * len(images)))
    wrong = [w for image, part in zip(images, parts) for w in _check(image, part, oracle)]
    if wrong:
        raise SystemExit(f"{len(wrong)} disagreements, e.g. {wrong[:5]}")
    n = len(images) * len(methods)
    out = {"command": "python -m benchmarks.tang_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine(), "images": n, "values_checked": n * 11, **metric_timings(parts, n, digits=3)}
    if not args.no_eval:
        out["leaderboard_command_s"] = round(_leaderboard_seconds(), 2)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
