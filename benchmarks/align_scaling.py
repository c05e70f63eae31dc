"""Wall time and peak RSS of `crossfuse-align build` on RoadScene (target) x MSRS (auxiliary),
P=64, S=200, K=800, with the auxiliary manifest replicated 1x and 10x (each pair listed again
under a new id, so every image is read and cut again).

    python -m benchmarks.align_scaling [--reps 1 10]

Needs ../shared/datasets and GNU time (/usr/bin/time). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, nargs="+", default=[1, 10])
    args = ap.parse_args()
    msrs = json.loads((REPO / "data_manifests" / "msrs.json").read_text())
    root = str((REPO / "data_manifests" / msrs["root"]).resolve())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in args.reps:
            pairs = [dict(p, id=f"r{k}/{p['id']}") for k in range(rep) for p in msrs["pairs"]]
            manifest = Path(tmp) / f"msrs_x{rep}.json"
            manifest.write_text(json.dumps({"name": f"MSRS-x{rep}", "root": root, "pairs": pairs}))
            cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "crossfuse.cli.align", "build", "-q",
                   "-t", str(REPO / "data_manifests" / "roadscene.json"), "-a", str(manifest),
                   "-o", str(Path(tmp) / f"x{rep}.zarr"), "-k", "800"]
            r = subprocess.run(cmd, capture_output=True, text=True, check=True)
            wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
            h, m, s = (float(g) if g else 0.0 for g in wall.groups())
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
            results.append({"aux_replication": rep, "aux_pairs": len(pairs), "wall_s": round(h * 3600 + m * 60 + s, 2),
                            "peak_rss_mib": round(rss / 1024, 1), "summary_time": r.stdout.strip().splitlines()[-1].strip()})
    print(json.dumps({"command": "python -m benchmarks.align_scaling", "results": results}))


if __name__ == "__main__":
    main()
