"""Corpus store: bytes on disk per patch, compression ratio of the chosen codec, read latency.

    python -m benchmarks.store_io [--store STORE] [--reads 200]

Without --store, builds RoadScene x MSRS (P=64, S=200, K=800) into a temporary store first.
Random single-patch reads and whole-chunk reads are timed (medians). The first chunk is also
encoded with alternative codecs (ratio, encode and decode time per patch, one thread) to show why
the default is what it is. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import zarr

from benchmarks.common import MANIFESTS, machine, scratch_dir


def _size(path: str, prefix: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(os.path.join(path, prefix)) for f in files)


def measure(store: str, reads: int) -> dict:
    g = zarr.open_group(store, mode="r")
    n = g["vis"].shape[0]
    raw = n * (g["vis"].nbytes // n + g["ir"].nbytes // n)
    on_disk = _size(store, "vis") + _size(store, "ir")
    rng = np.random.default_rng(0)
    single = []
    for i in rng.integers(0, n, size=reads):
        t = time.perf_counter()
        g["vis"][int(i)]
        g["ir"][int(i)]
        single.append(time.perf_counter() - t)
    chunk = g["vis"].chunks[0]
    whole = []
    for start in range(0, n, chunk):
        t = time.perf_counter()
        g["vis"][start:start + chunk]
        g["ir"][start:start + chunk]
        whole.append((time.perf_counter() - t) / min(chunk, n - start))
    return {"patches": n, "codec": [type(c).__name__ for c in g["vis"].compressors],
            "bytes_per_patch_on_disk": round(on_disk / n), "bytes_per_patch_raw": raw // n,
            "compression_ratio": round(raw / on_disk, 2),
            "random_patch_read_ms": round(statistics.median(single) * 1e3, 3),
            "random_patches_per_s": round(1 / statistics.median(single)),
            "chunk_read_per_patch_us": round(statistics.median(whole) * 1e6, 1),
            "chunk_read_patches_per_s": round(1 / statistics.median(whole))}


def compare_codecs(store: str, repeats: int = 20) -> dict:
    """Ratio and single-thread speed of candidate codecs on the first chunk of ``vis`` + ``ir``."""
    import numcodecs.blosc
    from numcodecs import LZ4, Blosc, Zstd

    numcodecs.blosc.set_nthreads(1)
    g = zarr.open_group(store, mode="r")
    chunk = g["vis"].chunks[0]
    arrays = [np.ascontiguousarray(g[name][:chunk]) for name in ("vis", "ir")]
    n, raw = len(arrays[0]), sum(a.nbytes for a in arrays)
    candidates = {"zstd level 0 (default: 3), chosen": Zstd(0), "zstd level 0 + frame checksum": Zstd(0, checksum=True),
                  "zstd level 1": Zstd(1), "lz4": LZ4(),
                  "blosc lz4hc bitshuffle": Blosc("lz4hc", 5, Blosc.BITSHUFFLE),
                  "blosc zstd bitshuffle": Blosc("zstd", 1, Blosc.BITSHUFFLE), "none": None}
    out = {}
    for name, codec in candidates.items():
        if codec is None:
            out[name] = {"ratio": 1.0}
            continue
        t = time.perf_counter()
        for _ in range(repeats):
            encoded = [codec.encode(a) for a in arrays]
        encode = (time.perf_counter() - t) / repeats
        t = time.perf_counter()
        for _ in range(repeats):
            for e in encoded:
                codec.decode(e)
        decode = (time.perf_counter() - t) / repeats
        out[name] = {"ratio": round(raw / sum(len(e) for e in encoded), 3),
                     "encode_us_per_patch": round(encode / n * 1e6, 1),
                     "decode_us_per_patch": round(decode / n * 1e6, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=None)
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    if args.store:
        result = measure(args.store, args.reads)
        result["codecs"] = compare_codecs(args.store)
    else:
        from crossfuse import manifest
        from crossfuse.align import build

        with scratch_dir() as tmp:
            store = os.path.join(tmp, "bench.zarr")
            build(target=manifest.load(str(MANIFESTS / "roadscene.json")), aux=manifest.load(str(MANIFESTS / "msrs.json")),
                  out=store)
            result = measure(store, args.reads)
            result["codecs"] = compare_codecs(store)
    print(json.dumps({"command": "python -m benchmarks.store_io", "machine": machine(), **result}))


if __name__ == "__main__":
    main()
