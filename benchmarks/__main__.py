"""Run every benchmark in turn: ``python -m benchmarks`` (needs ../shared and the bench extras
``pip install scipy h5py``; takes about 15 minutes on 2 cores). Each prints one JSON line."""

from __future__ import annotations

import subprocess
import sys

SUITE = (
    ("benchmarks.align_build", ["--scales", "1", "10", "--repeats", "3", "--baseline-scales", "1"]),
    ("benchmarks.loader", ["--repeats", "3"]),
    ("benchmarks.store_io", []),
    ("benchmarks.metrics_speed", []),
    ("benchmarks.network_cpu", ["--repeats", "3"]),
)


def main() -> int:
    status = 0
    for module, args in SUITE:
        print(f"# python -m {module} {' '.join(args)}", flush=True)
        status |= subprocess.call([sys.executable, "-m", module, *args])
    return status


if __name__ == "__main__":
    sys.exit(main())
