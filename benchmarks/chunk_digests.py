"""What checking every chunk's sha256 on read costs the training loader.

    python -m benchmarks.chunk_digests [--repeats 5]

Packs MSRS (1,629 patches of 64x64 at stride 200) into a temporary corpus and times one epoch
of uint8 batches of 8 streamed from Zarr (``in_memory=False``: every chunk read each epoch), with
the digest check (the default since issue 30) and without it (the same loader with its recorded
digests emptied), alternating, median of the repeats; and a first epoch in memory (all chunks
read once, checked, then served from RAM), both ways. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks.common import MANIFESTS, machine, scratch_dir
from crossfuse import corpus, manifest
from crossfuse.align import BuildParams, EngineConfig, pack


def epoch_seconds(url: str, *, checked: bool, in_memory: bool) -> tuple[float, int]:
    loader = corpus.PatchLoader([url], batch_size=8, seed=0, fields=("vis", "ir"), in_memory=in_memory)
    if not checked:
        loader.corpora.digests = [{} for _ in loader.corpora.digests]
    loader.set_epoch(0)
    start = time.perf_counter()
    n = sum(len(b["vis"]) for b in loader)
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with scratch_dir() as tmp:
        url = f"{tmp}/msrs.zarr"
        pack(dataset=manifest.load(str(MANIFESTS / "msrs.json")), out=url, params=BuildParams(stride=200),
             engine=EngineConfig(workers=2))
        rows = {}
        for in_memory in (False, True):
            times = {True: [], False: []}
            for _ in range(args.repeats):
                for checked in (True, False):
                    seconds, n = epoch_seconds(url, checked=checked, in_memory=in_memory)
                    times[checked].append(seconds)
            med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
            rows["streaming" if not in_memory else "in_memory_first_epoch"] = {
                "patches": n, "checked_patches_per_s": round(n / med[True]), "unchecked_patches_per_s": round(n / med[False]),
                "cost": round(med[True] / med[False], 3)}
    print(json.dumps({"benchmark": "chunk_digests", "machine": machine(), "repeats": args.repeats, **rows}))


if __name__ == "__main__":
    main()
