"""The experiment's scoring, before and after a change, side by side in one run.

    python -m benchmarks.scoring [--before 75d1b80] [--repeats 3] [--images N]

What an experiment does after every run: ``crossfuse eval`` (the CDDFuse protocol) of
RoadScene-50 and TNO-24 (``data_manifests/roadscene-test.json``, ``tno-test.json``; needs
``../shared/datasets``), reading included, on one process and one torch thread (as each run of
``crossfuse experiment -j 2`` scores). The fused images are the plain mean of each pair's gray
sources, written once to a scratch folder. "before" is the code of commit ``--before`` (by default
the one before scoring was sped up), extracted with ``git archive`` into a scratch package;
"after" is this checkout. Both are timed in fresh processes, in turn within each repeat (medians),
and every score of one is compared with the other's: the largest difference per metric, and
whether any value printed to 4 decimals (``crossfuse eval``'s table) differs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks.common import MANIFESTS, REPO, machine

TESTS = ("roadscene-test", "tno-test")
#: setup.cfg's package_dir: where each crossfuse package lives in the repository.
PACKAGES = {"align": "align", "fusion": "fusion", "cli": "cli", "experiment": "experiment", "corpus": "corpus",
            "models": "models"}

_SCORE = """
import json, sys, time, torch
torch.set_num_threads(1)
from crossfuse import manifest
from crossfuse.fusion import evaluate as ev
fused, images, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sets = [manifest.load(p) for p in sys.argv[4:]]
if images:
    import dataclasses
    sets = [dataclasses.replace(m, pairs=m.pairs[:images]) for m in sets]
t = time.perf_counter()
rows = [r for m in sets for r in ev.evaluate(fused + "/" + m.name, [m], workers=1)]
seconds = time.perf_counter() - t
json.dump({"seconds": seconds, "rows": [[r.dataset, r.name, r.metrics] for r in rows]}, open(out, "w"))
"""


def _package_of(rev: str, where: str) -> str:
    """A folder to put on PYTHONPATH that imports commit ``rev``'s crossfuse."""
    src = os.path.join(where, "src")
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "core", *PACKAGES.values()],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    for name, folder in PACKAGES.items():
        if os.path.isdir(os.path.join(src, folder)):
            os.symlink(os.path.join(src, folder), os.path.join(src, "core", name))
    pkg = os.path.join(where, "pkg")
    os.makedirs(pkg)
    os.symlink(os.path.join(src, "core"), os.path.join(pkg, "crossfuse"))
    return pkg


def _mean_fusions(where: str, images: int) -> None:
    """The gray mean of each test pair, as PNG, in ``where/<test set name>/<id>.png``."""
    import numpy as np
    from PIL import Image

    from crossfuse import manifest
    from crossfuse.fusion.metrics import read_gray

    for test in TESTS:
        m = manifest.load(str(MANIFESTS / f"{test}.json"))
        os.makedirs(os.path.join(where, m.name), exist_ok=True)
        for pair in m.pairs[:images or None]:
            fused = (read_gray(m.source(pair.ir)) + read_gray(m.source(pair.vis))) / 2
            Image.fromarray(np.round(fused).astype(np.uint8)).save(os.path.join(where, m.name, f"{pair.id}.png"))


def _score(pythonpath: str | None, fused: str, images: int, out: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    subprocess.run([sys.executable, "-c", _SCORE, fused, str(images), out,
                    *(str(MANIFESTS / f"{t}.json") for t in TESTS)], check=True, env=env, cwd=os.path.dirname(out))
    with open(out) as fh:
        return json.load(fh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="75d1b80", help="commit whose scoring is the baseline")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=0, help="first N pairs of each test set (0: all)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before_pkg = _package_of(args.before, os.path.join(tmp, "before"))
        fused = os.path.join(tmp, "fused")
        _mean_fusions(fused, args.images)
        times: dict[str, list[float]] = {"before": [], "after": []}
        results = {}
        for r in range(args.repeats):
            for name, path in (("before", before_pkg), ("after", None)):
                results[name] = _score(path, fused, args.images, os.path.join(tmp, f"{name}{r}.json"))
                times[name].append(results[name]["seconds"])
    before, after = results["before"]["rows"], results["after"]["rows"]
    assert [r[:2] for r in before] == [r[:2] for r in after]
    worst = {k: max(abs(b[2][k] - a[2][k]) for b, a in zip(before, after)) for k in before[0][2]}
    printed = sum(f"{b[2][k]:.4f}" != f"{a[2][k]:.4f}" for b, a in zip(before, after) for k in b[2])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"machine": machine(), "before": args.before, "images": len(before), "repeats": args.repeats,
                      "seconds": {k: round(v, 2) for k, v in med.items()},
                      "ms_per_image": {k: round(1000 * v / len(before), 1) for k, v in med.items()},
                      "speedup": round(med["before"] / med["after"], 2),
                      "max_abs_difference": {k: v for k, v in worst.items() if v},
                      "values_printed_differently": printed}))


if __name__ == "__main__":
    main()
