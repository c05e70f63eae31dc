"""Orchestration of ``build`` (aligned corpus) and ``pack`` (a dataset as it is).

Plan, then execute: the scan runs per batch of pairs on Dask and leaves its results in the
store's scratch group; the selection, the gamma fit and the output row of every patch are then
computed as plain arrays in this process; finally Dask writes whole output chunks. Memory stays
bounded by a batch of images and a chunk of patches, whatever the size of the datasets.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossfuse import manifest as _manifest
from crossfuse.align import gamma as _gamma
from crossfuse.align import patches as _patches
from crossfuse.align import retrieval, tasks
from crossfuse.align import store as _store
from crossfuse.align.config import BuildParams, EngineConfig
from crossfuse.align.engine import dask_client
from crossfuse.errors import ManifestError, PairError, ParameterError
from crossfuse.manifest import Manifest
from crossfuse.progress import Progress, no_progress


@dataclass(frozen=True, kw_only=True)
class BuildSummary:
    """What a build did: counts, statistics (0-255, RGB) and wall time per stage (seconds)."""

    store: str
    kind: str
    resumed: bool
    counts: dict[str, int]
    target_means: tuple[float, ...] | None
    gamma: tuple[float, ...]
    means_before: tuple[float, ...]
    means_after: tuple[float, ...]
    skipped: list[dict]
    seconds: dict[str, float] = field(default_factory=dict)
    recall: float | None = None


@dataclass(frozen=True, kw_only=True)
class ScanResult:
    """Every patch of one dataset as plain arrays, in scan order (pair, then row-major origin)."""

    origins: np.ndarray   # (n, 2) int32
    means: np.ndarray     # (n, 3) float64
    pair: np.ndarray      # (n,) int32, index into the manifest's pairs
    batch: np.ndarray     # (n,) int32, scan batch holding the patch
    local: np.ndarray     # (n,) int64, row within that batch
    pairs: list[dict]     # pairs read successfully, in manifest order
    problems: list[dict]


def _fingerprint(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _check_not_empty(*datasets: Manifest) -> None:
    for dataset in datasets:
        if not dataset.pairs:
            raise ManifestError(f"{dataset.origin} lists no image pairs; a dataset needs at least one.")


def _dataset_input(dataset: Manifest) -> str:
    """How a dataset is named in a store's ``inputs``: where it came from and what it lists."""
    return f"{dataset.origin} ({len(dataset.pairs)} pairs, sha256 {_manifest.fingerprint(dataset)[:12]})"


def _batches(manifest: Manifest, size: int) -> list[tuple[int, Manifest]]:
    out = []
    for first in range(0, len(manifest.pairs), size):
        sub = Manifest(name=manifest.name, root=manifest.root, origin=manifest.origin,
                       pairs=manifest.pairs[first:first + size])
        out.append((first, sub))
    return out


@dataclass(frozen=True, kw_only=True)
class _PendingScan:
    """A dataset's scan tasks, submitted: ``futures`` maps each to its batch of pairs; the
    dataset has ``batches`` batches in all, some perhaps scanned by an earlier run."""

    role: str
    manifest: Manifest
    batches: int
    futures: dict
    skip_bad: bool
    label: str


def _submit_scan(client, url: str, role: str, manifest: Manifest, params: BuildParams, engine: EngineConfig,
                 *, stash: bool, skip_bad: bool, label: str) -> _PendingScan:
    """Submit the scan of every batch of ``manifest`` not already in the scratch group."""
    if not manifest.pairs:
        raise ManifestError(f"{manifest.origin} lists no image pairs; a dataset needs at least one.")
    batches = _batches(manifest, engine.batch)
    futures = {client.submit(tasks.scan_batch, url, role, i, sub, first, patch=params.patch, stride=params.stride,
                             stash=stash, skip_bad=skip_bad, pure=False): sub
               for i, (first, sub) in enumerate(batches) if not _store.batch_done(url, role, i)}
    return _PendingScan(role=role, manifest=manifest, batches=len(batches), futures=futures, skip_bad=skip_bad,
                        label=label)


def _collect_scan(url: str, pending: _PendingScan, params: BuildParams, *, progress: Progress) -> ScanResult:
    """Wait for a submitted scan and gather its per-batch results as plain arrays."""
    import distributed

    role, manifest, futures = pending.role, pending.manifest, pending.futures
    problems: list[dict] = []
    with progress(pending.label, len(manifest.pairs)) as advance:
        advance(len(manifest.pairs) - sum(len(sub.pairs) for sub in futures.values()))
        for future in distributed.as_completed(futures):
            problems.extend(future.result())
            advance(len(futures[future].pairs))
    if problems and not pending.skip_bad:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise PairError(f"{first['error']}{more} Pass --skip-bad to record bad pairs and go on.",
                        pair_id=first["id"], path=first["path"])
    names = _store.SCAN_ARRAYS
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names + ("batch", "local")}
    pairs: list[dict] = []
    problems = []
    for i in range(pending.batches):
        arrays, info = _store.read_batch(url, role, i, names)
        for n in names:
            parts[n].append(arrays[n])
        parts["batch"].append(np.full(len(arrays["pair"]), i, dtype=np.int32))
        parts["local"].append(np.arange(len(arrays["pair"]), dtype=np.int64))
        pairs.extend(info["pairs"])
        problems.extend(info["problems"])
    result = ScanResult(**{n: np.concatenate(v) for n, v in parts.items()}, pairs=pairs, problems=problems)
    if len(result.means) == 0:
        if not pairs:
            raise ManifestError(f"no pair of {manifest.origin} could be read; see the skipped list.")
        largest = max(pairs, key=lambda p: p["height"] * p["width"])
        raise ParameterError(
            f"patch size {params.patch} is larger than every image of {manifest.origin} (the largest is "
            f"{largest['width']}x{largest['height']}); use a smaller --patch.")
    return result


def _selection_histogram(url: str, role: str, scan: ScanResult, ids: np.ndarray) -> np.ndarray:
    """(3, 256) counts of the visible channels over the patches ``ids`` of ``scan``, from the
    stashed pixels of the batches holding them (only the selected patches are counted)."""
    total = np.zeros((3, 256), dtype=np.int64)
    batches = scan.batch[ids]
    for batch in np.unique(batches):
        rows = scan.local[ids[batches == batch]]
        stash, _ = _store.read_batch(url, role, int(batch), ("vis",))
        total += _patches.channel_counts(stash["vis"][rows])
    return total


def _write(client, group, url: str, role: str, scan: ScanResult, ids: np.ndarray, distances: np.ndarray,
           luts: np.ndarray, params: BuildParams, progress: Progress) -> None:
    import distributed

    n = len(ids)
    _store.create_arrays(group, n=n, patch=params.patch, chunk=params.chunk)
    source_of_pair = {p["index"]: s for s, p in enumerate(scan.pairs)}
    group["source"][...] = np.array([source_of_pair[int(i)] for i in scan.pair[ids]], dtype=np.int32)
    group["origin"][...] = scan.origins[ids]
    group["means"][...] = scan.means[ids].astype(np.float32)
    group["distance"][...] = distances.astype(np.float32)
    done = _store.written_chunks(group)
    chunk_count = -(-n // params.chunk)
    with progress("write patches", n) as advance:
        futures = {}
        for c in range(chunk_count):
            start, stop = c * params.chunk, min(n, (c + 1) * params.chunk)
            if c in done:
                advance(stop - start)
                continue
            sel = ids[start:stop]
            futures[client.submit(tasks.write_chunk, url, role, start, stop, scan.batch[sel],
                                  scan.local[sel], luts, pure=False)] = c
        for future in distributed.as_completed(futures):
            advance(future.result())
            done.add(futures[future])
            _store.mark_written(group, done)


def _source_record(pairs: list[dict]) -> list[dict]:
    return [{"id": p["id"], "ir": p["ir"], "vis": p["vis"], "ir_sha256": p["ir_sha256"],
             "vis_sha256": p["vis_sha256"]} for p in pairs]


def _dataset_sha(pairs: list[dict]) -> str:
    return hashlib.sha256(json.dumps(_source_record(pairs), sort_keys=True).encode()).hexdigest()


def build(*, target: Manifest, aux: Manifest, out: str, params: BuildParams = BuildParams(),
          engine: EngineConfig = EngineConfig(), overwrite: bool = False, skip_bad: bool = False,
          progress: Progress = no_progress) -> BuildSummary:
    """Build an aligned corpus at ``out``: the ``params.k`` patches of ``aux`` whose visible RGB
    means are closest (L1) to ``target``'s, gamma-corrected per channel to match them."""
    out = _manifest.absolute(out)
    _check_not_empty(target, aux)  # everything that can be checked before anything is written
    scan_fp = _fingerprint(kind="aligned", patch=params.patch, stride=params.stride, batch=engine.batch,
                           skip_bad=skip_bad, target=_manifest.fingerprint(target), aux=_manifest.fingerprint(aux),
                           target_root=target.root, aux_root=aux.root)
    fingerprint = _fingerprint(scan=scan_fp, params=params.as_dict())
    inputs = {"target": _dataset_input(target), "aux": _dataset_input(aux), **params.as_dict(), "skip_bad": skip_bad}
    clock = {"start": time.perf_counter()}
    group, resumed = _store.open_for_build(out, kind="aligned", fingerprint=fingerprint, scan_fingerprint=scan_fp,
                                           inputs=inputs, overwrite=overwrite)
    with dask_client(engine) as client:
        # Both datasets' tasks are queued at once, so the auxiliary scan fills the cores the
        # target scan's last batches leave idle.
        pending = [_submit_scan(client, out, "target", target, params, engine, stash=False, skip_bad=skip_bad,
                                label=f"scan target ({target.name})"),
                   _submit_scan(client, out, "aux", aux, params, engine, stash=True, skip_bad=skip_bad,
                                label=f"scan auxiliary ({aux.name})")]
        tscan, ascan = (_collect_scan(out, p, params, progress=progress) for p in pending)
        clock["scan"] = time.perf_counter()
        target_means = tscan.means.mean(axis=0)
        sel = retrieval.top_k(ascan.means, target_means, params.k, index=params.index,
                              nlist=params.nlist, nprobe=params.nprobe)
        recall = (retrieval.ivf_recall(ascan.means, params.k, nlist=params.nlist, nprobe=params.nprobe)
                  if params.index == "ivf" else None)
        order = np.argsort(sel.ids, kind="stable")  # output rows by source, then origin
        ids, distances = sel.ids[order], sel.distances[order]
        hist = _selection_histogram(out, "aux", ascan, ids)
        fits = _gamma.fit(hist, target_means)
        luts = np.stack([_gamma.lut(f.gamma) for f in fits])
        clock["select"] = time.perf_counter()
        _write(client, group, out, "aux", ascan, ids, distances, luts, params, progress)
        clock["write"] = time.perf_counter()
    counts = {"target_pairs": len(tscan.pairs), "target_patches": len(tscan.means),
              "aux_pairs": len(ascan.pairs), "aux_patches": len(ascan.means), "patches": len(ids),
              "skipped": len(tscan.problems) + len(ascan.problems)}
    skipped = [{**p, "dataset": "target"} for p in tscan.problems] + [{**p, "dataset": "aux"} for p in ascan.problems]
    meta = {
        "params": params.record(kind="aligned"),
        "sources": _source_record(ascan.pairs),
        "aux": {"name": aux.name, "root": aux.root, "sha256": _dataset_sha(ascan.pairs)},
        "target": {"name": target.name, "root": target.root, "sha256": _dataset_sha(tscan.pairs),
                   "means": [float(v) for v in target_means], "pairs": len(tscan.pairs),
                   "patches": len(tscan.means)},
        "gamma": [f.gamma for f in fits],
        "gamma_reachable": [f.reachable for f in fits],
        "means_before": [f.mean_before for f in fits],
        "means_after": [f.mean_after for f in fits],
        "counts": counts,
        "skipped": skipped,
    }
    if recall is not None:
        meta["ivf_recall"] = recall
    _store.finalize(group, meta)
    end = time.perf_counter()
    return BuildSummary(store=out, kind="aligned", resumed=resumed, counts=counts,
                        target_means=tuple(meta["target"]["means"]), gamma=tuple(meta["gamma"]),
                        means_before=tuple(meta["means_before"]), means_after=tuple(meta["means_after"]),
                        skipped=skipped, recall=recall,
                        seconds={"scan": clock["scan"] - clock["start"], "select": clock["select"] - clock["scan"],
                                 "write": clock["write"] - clock["select"], "total": end - clock["start"]})


def pack(*, dataset: Manifest, out: str, params: BuildParams = BuildParams(), engine: EngineConfig = EngineConfig(),
         overwrite: bool = False, skip_bad: bool = False, progress: Progress = no_progress) -> BuildSummary:
    """Write every patch of ``dataset`` to a corpus at ``out`` as it is (kind ``packed``)."""
    out = _manifest.absolute(out)
    _check_not_empty(dataset)
    scan_fp = _fingerprint(kind="packed", patch=params.patch, stride=params.stride, batch=engine.batch,
                           skip_bad=skip_bad, dataset=_manifest.fingerprint(dataset), root=dataset.root)
    fingerprint = _fingerprint(scan=scan_fp, chunk=params.chunk)
    inputs = {"dataset": _dataset_input(dataset), "patch": params.patch, "stride": params.stride,
              "chunk": params.chunk, "skip_bad": skip_bad}
    start = time.perf_counter()
    group, resumed = _store.open_for_build(out, kind="packed", fingerprint=fingerprint, scan_fingerprint=scan_fp,
                                           inputs=inputs, overwrite=overwrite)
    with dask_client(engine) as client:
        scan = _collect_scan(out, _submit_scan(client, out, "aux", dataset, params, engine, stash=True,
                                               skip_bad=skip_bad, label=f"scan ({dataset.name})"),
                             params, progress=progress)
        scanned = time.perf_counter()
        ids = np.arange(len(scan.means), dtype=np.int64)
        luts = np.tile(np.arange(256, dtype=np.uint8), (3, 1))
        _write(client, group, out, "aux", scan, ids, np.zeros(len(ids), np.float32), luts, params, progress)
        written = time.perf_counter()
    means = [float(v) for v in scan.means.mean(axis=0)]
    counts = {"aux_pairs": len(scan.pairs), "aux_patches": len(ids), "patches": len(ids),
              "skipped": len(scan.problems)}
    skipped = [{**p, "dataset": "aux"} for p in scan.problems]
    meta = {"params": params.record(kind="packed"), "sources": _source_record(scan.pairs),
            "aux": {"name": dataset.name, "root": dataset.root, "sha256": _dataset_sha(scan.pairs)},
            "target": None, "gamma": [1.0, 1.0, 1.0], "means_before": means, "means_after": means,
            "counts": counts, "skipped": skipped}
    _store.finalize(group, meta)
    end = time.perf_counter()
    return BuildSummary(store=out, kind="packed", resumed=resumed, counts=counts, target_means=None,
                        gamma=(1.0, 1.0, 1.0), means_before=tuple(means), means_after=tuple(means),
                        skipped=skipped, seconds={"scan": scanned - start, "write": written - scanned,
                                                  "total": end - start})
