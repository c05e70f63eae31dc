"""Orchestration of ``build`` (aligned corpus) and ``pack`` (a dataset as it is).

Plan, then execute: the scan runs per batch of pairs on Dask and leaves its results in the
store's scratch group; the selection, the gamma fit and the output row of every patch are then
computed as plain arrays in this process; finally Dask writes whole output chunks. Memory stays
bounded by a batch of images and a chunk of patches, whatever the size of the datasets.
Both commands share one skeleton (:func:`_run`): open or resume the store, run the stages on
the engine, finalise the record.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossfuse import manifest as _manifest
from crossfuse.align import gamma as _gamma
from crossfuse.align import quality, retrieval, scan, tasks
from crossfuse.align import store as _store
from crossfuse.align.config import BuildParams, EngineConfig
from crossfuse.align.engine import completed, dask_client
from crossfuse.align.lock import new_token, store_lock
from crossfuse.align.scan import ScanResult
from crossfuse.digest import json_sha256
from crossfuse.errors import ManifestError
from crossfuse.manifest import Manifest
from crossfuse.progress import Progress, no_progress
from crossfuse.schema import ARRAYS, Counts, CorpusRecord, Dataset


@dataclass(frozen=True, kw_only=True)
class BuildSummary:
    """What a build did: the corpus ``record`` as stored, whether it ``resumed`` an earlier run,
    and the wall time of each stage (seconds)."""

    store: str
    resumed: bool
    record: CorpusRecord
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def counts(self) -> Counts:
        return self.record.counts

    @property
    def target_means(self) -> tuple[float, float, float] | None:
        return self.record.target.means if self.record.target else None

    @property
    def gamma(self) -> tuple[float, float, float]:
        return self.record.gamma

    @property
    def means_before(self) -> tuple[float, float, float]:
        return self.record.means_before

    @property
    def means_after(self) -> tuple[float, float, float]:
        return self.record.means_after

    @property
    def skipped(self):
        return self.record.skipped

    @property
    def recall(self) -> float | None:
        return self.record.ivf_recall


@dataclass(frozen=True, kw_only=True)
class _Job:
    """What identifies a build, for resuming it: the scan's and the whole build's fingerprints,
    and the inputs in readable form (named when a rerun differs)."""

    kind: str
    fingerprint: str
    scan_fingerprint: str
    inputs: dict[str, Any]


def _check_not_empty(*datasets: Manifest) -> None:
    for dataset in datasets:
        if not dataset.pairs:
            raise ManifestError(f"{dataset.origin} lists no image pairs; a dataset needs at least one.")


def _dataset_input(dataset: Manifest) -> str:
    """How a dataset is named in a store's ``inputs``: where it came from and what it lists."""
    return f"{dataset.origin} ({len(dataset.pairs)} pairs, sha256 {_manifest.fingerprint(dataset)[:12]})"


def _dataset(manifest: Manifest, result: ScanResult, **stats: Any) -> Dataset:
    """The record of a scanned dataset: the sha256 is over the sources actually read."""
    sha = json_sha256([p.source().to_json() for p in result.pairs])
    return Dataset(name=manifest.name, root=manifest.root, sha256=sha, **stats)


def _run(job: _Job, out: str, *, engine: EngineConfig, overwrite: bool, break_lock: bool,
         stages: Callable[..., CorpusRecord]) -> BuildSummary:
    """The skeleton of both commands: take the store's writer lock, open (or resume) the store,
    run ``stages(client, group, clock)`` on the engine to get the corpus record, finalise the
    store with it."""
    clock = {"start": time.perf_counter()}
    token = new_token()
    with store_lock(out, break_lock=break_lock):
        group, resumed = _store.open_for_build(out, kind=job.kind, fingerprint=job.fingerprint,
                                               scan_fingerprint=job.scan_fingerprint, inputs=job.inputs,
                                               overwrite=overwrite, token=token)
        with dask_client(engine) as client:
            record = stages(client, group, clock)
        record = _store.finalize(group, record, token)
    clock["end"] = time.perf_counter()
    marks = list(clock)
    seconds = {b: clock[b] - clock[a] for a, b in zip(marks, marks[1:]) if b != "end"}
    seconds["total"] = clock["end"] - clock["start"]
    return BuildSummary(store=out, resumed=resumed, record=record, seconds=seconds)


def _selection_counts(url: str, role: str, batches: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(K, 3, 256) counts of each visible channel of the patches at (``batches``, ``rows``) of the
    scratch ``role``, in that order."""
    counts = np.zeros((len(rows), 3, 256), dtype=np.int64)
    for batch in np.unique(batches):
        where = np.flatnonzero(batches == batch)
        stash, _ = _store.read_batch(url, role, int(batch), ("vis",))
        counts[where] = quality.per_patch_counts(stash["vis"][rows[where]])
    return counts


def _selected_pixels(client, url: str, aux: Manifest, result: ScanResult, ids: np.ndarray, params: BuildParams,
                     engine: EngineConfig, progress: Progress) -> tuple[str, np.ndarray, np.ndarray]:
    """Where the selected patches' pixels are: (scratch role, batch and row of each), in the scan's
    stash, or with ``engine.low_scratch`` read again by a second pass."""
    if not engine.low_scratch:
        return "aux", result.batch[ids], result.local[ids]
    plan = _fetch(client, url, aux, result, ids, params, engine, progress)
    return _store.SELECTED, plan.batch, plan.local


@dataclass(frozen=True, kw_only=True)
class _FetchPlan:
    """The second pass: per fetch batch, the manifest indices of its pairs, each pair's origins
    and (ir, vis) sha256 as scanned; and per output row its (batch, row in batch)."""

    pairs: list[list[int]]
    origins: list[list[np.ndarray]]
    expected: list[list[tuple[str, str]]]
    batch: np.ndarray
    local: np.ndarray


def _fetch_plan(result: ScanResult, ids: np.ndarray, per_batch: int) -> _FetchPlan:
    """Group the selected patches (``ids``, in pool order, so each pair's rows are contiguous) by
    source pair, ``per_batch`` pairs to a fetch task."""
    pair_of = result.pair[ids]
    scanned = {p.index: p for p in result.pairs}
    unique = list(dict.fromkeys(int(i) for i in pair_of))
    plan = _FetchPlan(pairs=[], origins=[], expected=[], batch=np.zeros(len(ids), np.int32),
                      local=np.zeros(len(ids), np.int64))
    for b, first in enumerate(range(0, len(unique), per_batch)):
        mine = unique[first:first + per_batch]
        rows = np.flatnonzero(np.isin(pair_of, mine))
        plan.batch[rows] = b
        plan.local[rows] = np.arange(len(rows))
        plan.pairs.append(mine)
        plan.origins.append([result.origins[ids[pair_of == p]] for p in mine])
        plan.expected.append([(scanned[p].ir_sha256, scanned[p].vis_sha256) for p in mine])
    return plan


def _fetch(client, url: str, aux: Manifest, result: ScanResult, ids: np.ndarray, params: BuildParams,
           engine: EngineConfig, progress: Progress) -> _FetchPlan:
    """Read the selected patches' pixels again from the pairs holding them (only those), into the
    scratch role ``selected``; batches kept by an earlier run are not read again."""
    plan = _fetch_plan(result, ids, engine.batch)
    futures = {}
    for b, pairs in enumerate(plan.pairs):
        if _store.batch_done(url, _store.SELECTED, b):
            continue
        sub = Manifest(name=aux.name, root=aux.root, origin=aux.origin, pairs=[aux.pairs[i] for i in pairs])
        futures[client.submit(tasks.fetch_batch, url, b, sub, plan.origins[b], plan.expected[b], patch=params.patch,
                              pure=False)] = len(pairs)
    total = sum(len(p) for p in plan.pairs)
    with progress("read selected pairs", total) as advance:
        advance(total - sum(futures.values()))
        for future, _ in completed(client, futures, worker_timeout=engine.worker_timeout):
            advance(futures[future])
    return plan


def _write(client, group, url: str, result: ScanResult, ids: np.ndarray, distances: np.ndarray,
           luts: np.ndarray, params: BuildParams, engine: EngineConfig, progress: Progress,
           pixels: tuple[str, np.ndarray, np.ndarray]) -> dict[str, tuple[tuple[int, str], ...]]:
    """Write the per-patch arrays here and the pixel arrays as whole chunks on the engine, each
    chunk recorded with its digest as written when its task returns (a resumed build skips those
    whose objects are still there at their recorded size). Returns every array's chunk digests."""
    n = len(ids)
    _store.create_arrays(group, n=n, patch=params.patch, chunk=params.chunk)
    source_of_pair = {p.index: s for s, p in enumerate(result.pairs)}
    group["source"][...] = np.array([source_of_pair[int(i)] for i in result.pair[ids]], dtype=np.int32)
    group["origin"][...] = result.origins[ids]
    group["means"][...] = result.means[ids].astype(np.float32)
    group["distance"][...] = distances.astype(np.float32)
    done = _store.written_chunks(url, group)
    role, batch_of, local_of = pixels
    with progress("write patches", n) as advance:
        futures = {}
        for c in range(-(-n // params.chunk)):
            start, stop = c * params.chunk, min(n, (c + 1) * params.chunk)
            if c in done:
                advance(stop - start)
                continue
            futures[client.submit(tasks.write_chunk, url, role, start, stop, batch_of[start:stop],
                                  local_of[start:stop], luts, pure=False)] = c
        marked = time.perf_counter()
        try:
            for future, (rows, digests) in completed(client, futures, worker_timeout=engine.worker_timeout):
                advance(rows)
                done[futures[future]] = digests
                # The list grows with the store: rewrite it at most once a second (a kill loses at
                # most a second of marks, and those chunks are written again on resume).
                if time.perf_counter() - marked > 1.0:
                    _store.mark_written(group, done)
                    marked = time.perf_counter()
        finally:
            _store.mark_written(group, done)
    digests = {name: tuple((int(done[c][name][0]), str(done[c][name][1])) for c in sorted(done))
               for name in ("vis", "ir")}
    return {name: digests[name] if name in digests else _store.chunk_digests(url, group, name) for name in ARRAYS}


def build(*, target: Manifest, aux: Manifest, out: str, params: BuildParams = BuildParams(),
          engine: EngineConfig = EngineConfig(), overwrite: bool = False, skip_bad: bool = False,
          break_lock: bool = False, progress: Progress = no_progress) -> BuildSummary:
    """Build an aligned corpus at ``out``: the ``params.k`` patches of ``aux`` whose visible RGB
    means are closest (L1) to ``target``'s, gamma-corrected per channel to match them. One build
    per store at a time (``break_lock`` takes over a lock whose holder cannot be checked)."""
    out = _manifest.absolute(out)
    _check_not_empty(target, aux)  # everything that can be checked before anything is written
    scan_fp = json_sha256(dict(kind="aligned", patch=params.patch, stride=params.stride, batch=engine.batch,
                               skip_bad=skip_bad, low_scratch=engine.low_scratch,
                               target=_manifest.fingerprint(target),
                               aux=_manifest.fingerprint(aux), target_root=target.root, aux_root=aux.root))
    job = _Job(kind="aligned", scan_fingerprint=scan_fp,
               fingerprint=json_sha256(dict(scan=scan_fp, params=params.as_dict())),
               inputs={"target": _dataset_input(target), "aux": _dataset_input(aux), **params.as_dict(),
                       "skip_bad": skip_bad})

    def stages(client, group, clock: dict[str, float]) -> CorpusRecord:
        # Both datasets' tasks are queued at once, so the auxiliary scan fills the cores the
        # target scan's last batches leave idle.
        pending = [scan.submit(client, out, "target", target, params, engine, stash=False, skip_bad=skip_bad,
                               label=f"scan target ({target.name})"),
                   scan.submit(client, out, "aux", aux, params, engine, stash=not engine.low_scratch,
                               skip_bad=skip_bad,
                               label=f"scan auxiliary ({aux.name})")]
        tscan, ascan = (scan.collect(client, out, p, params, engine, progress=progress) for p in pending)
        clock["scan"] = time.perf_counter()
        target_means = tscan.means.mean(axis=0)
        sel = retrieval.top_k(ascan.means, target_means, params)
        recall = retrieval.ivf_recall(ascan.means, params) if params.index == "ivf" else None
        order = np.argsort(sel.ids, kind="stable")  # output rows by source, then origin
        ids, distances = sel.ids[order], sel.distances[order]
        pixels = _selected_pixels(client, out, aux, ascan, ids, params, engine, progress)
        counts = _selection_counts(out, *pixels)
        fits = _gamma.fit(counts.sum(axis=0), target_means)
        luts = np.stack([_gamma.lut(f.gamma) for f in fits])
        w1 = quality.alignment_distances(tscan.means, ascan.means, ascan.means[ids],
                                         quality.corrected_means(counts, luts))
        _store.write_stats(group, target_means=tscan.means, pool_means=ascan.means)
        clock["select"] = time.perf_counter()
        chunks = _write(client, group, out, ascan, ids, distances, luts, params, engine, progress, pixels=pixels)
        clock["write"] = time.perf_counter()
        return CorpusRecord(
            kind="aligned", params=dataclasses.replace(params.record(kind="aligned"), nlist=sel.nlist),
            sources=tuple(p.source() for p in ascan.pairs), aux=_dataset(aux, ascan),
            target=_dataset(target, tscan, means=tuple(float(v) for v in target_means), pairs=len(tscan.pairs),
                            patches=len(tscan.means)),
            gamma=tuple(f.gamma for f in fits), gamma_reachable=tuple(f.reachable for f in fits),
            means_before=tuple(f.mean_before for f in fits), means_after=tuple(f.mean_after for f in fits),
            counts=Counts(target_pairs=len(tscan.pairs), target_patches=len(tscan.means), aux_pairs=len(ascan.pairs),
                          aux_patches=len(ascan.means), patches=len(ids),
                          skipped=len(tscan.problems) + len(ascan.problems)),
            skipped=tuple(tscan.problems + ascan.problems), ivf_recall=recall, chunks=chunks,
            w1=w1)

    return _run(job, out, engine=engine, overwrite=overwrite, break_lock=break_lock, stages=stages)


def pack(*, dataset: Manifest, out: str, params: BuildParams = BuildParams(), engine: EngineConfig = EngineConfig(),
         overwrite: bool = False, skip_bad: bool = False, break_lock: bool = False,
         progress: Progress = no_progress) -> BuildSummary:
    """Write every patch of ``dataset`` to a corpus at ``out`` as it is (kind ``packed``)."""
    out = _manifest.absolute(out)
    _check_not_empty(dataset)
    scan_fp = json_sha256(dict(kind="packed", patch=params.patch, stride=params.stride, batch=engine.batch,
                               skip_bad=skip_bad, dataset=_manifest.fingerprint(dataset), root=dataset.root))
    job = _Job(kind="packed", scan_fingerprint=scan_fp, fingerprint=json_sha256(dict(scan=scan_fp, chunk=params.chunk)),
               inputs={"dataset": _dataset_input(dataset), "patch": params.patch, "stride": params.stride,
                       "chunk": params.chunk, "skip_bad": skip_bad})

    def stages(client, group, clock: dict[str, float]) -> CorpusRecord:
        result = scan.collect(client, out, scan.submit(client, out, "aux", dataset, params, engine, stash=True,
                                                       skip_bad=skip_bad, label=f"scan ({dataset.name})"),
                              params, engine, progress=progress)
        clock["scan"] = time.perf_counter()
        ids = np.arange(len(result.means), dtype=np.int64)
        identity = np.tile(np.arange(256, dtype=np.uint8), (3, 1))
        chunks = _write(client, group, out, result, ids, np.zeros(len(ids), np.float32), identity, params, engine,
                        progress, pixels=("aux", result.batch[ids], result.local[ids]))
        clock["write"] = time.perf_counter()
        means = tuple(float(v) for v in result.means.mean(axis=0))
        return CorpusRecord(kind="packed", params=params.record(kind="packed"),
                            sources=tuple(p.source() for p in result.pairs), aux=_dataset(dataset, result),
                            target=None, gamma=(1.0, 1.0, 1.0), means_before=means, means_after=means,
                            counts=Counts(aux_pairs=len(result.pairs), aux_patches=len(ids), patches=len(ids),
                                          skipped=len(result.problems)),
                            skipped=tuple(result.problems), chunks=chunks)

    return _run(job, out, engine=engine, overwrite=overwrite, break_lock=break_lock, stages=stages)
