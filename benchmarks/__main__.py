"""Run every benchmark in turn: ``python -m benchmarks`` (or ``make bench``), about 30 minutes on
2 cores. Needs ../shared and the bench extras (``pip install -e .[bench]``: scipy, h5py). Each
benchmark prints one JSON line; BENCHMARKS.md records them. ``--smoke`` runs the quick modes
(tiny sizes, seconds) of the benchmarks that have one."""

from __future__ import annotations

import subprocess
import sys

SUITE = (
    ("benchmarks.align_build", ["--scales", "1", "10", "30", "--repeats", "3", "--baseline-scales", "1"]),
    ("benchmarks.loader", ["--repeats", "5"]),
    ("benchmarks.store_io", []),
    ("benchmarks.metrics_speed", ["--repeats", "7"]),
    ("benchmarks.vifb_speed", []),
    ("benchmarks.tang_speed", []),
    ("benchmarks.network_cpu", ["--repeats", "3"]),
    ("benchmarks.selection_scale", ["--sizes", "1e6", "1e7", "1e8"]),
)
SMOKE = (
    ("benchmarks.network_cpu", ["--smoke"]),
    ("benchmarks.gpu", ["--device", "cpu", "--smoke", "--no-compile"]),
    ("benchmarks.metrics_speed", ["--smoke"]),
    ("benchmarks.vifb_speed", ["--smoke"]),
    ("benchmarks.tang_speed", ["--smoke"]),
    ("benchmarks.selection_scale", ["--smoke"]),
)


def main(argv: list[str]) -> int:
    status = 0
    for module, args in SMOKE if "--smoke" in argv else SUITE:
        print(f"# python -m {module} {' '.join(args)}", flush=True)
        status |= subprocess.call([sys.executable, "-m", module, *args])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
