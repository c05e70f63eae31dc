"""Orchestration of ``build`` (aligned corpus) and ``pack`` (a dataset as it is).

Plan, then execute: the scan runs per batch of pairs on Dask and leaves its results in the
store's scratch group; the selection, the gamma fit and the output row of every patch are then
computed as plain arrays in this process; finally Dask writes whole output chunks. An aligned
build scans its target first and then its auxiliary pool with a running threshold
(:mod:`crossfuse.align.candidates`), so that its scratch and this process hold about K patches
and a histogram, not one row per pool patch; a pack stashes every patch (it writes them all).
Both commands share one skeleton (:func:`_run`): open or resume the store, run the stages on
the engine, finalise the record.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from crossfuse import manifest as _manifest
from crossfuse.align import gamma as _gamma
from crossfuse.align import histmatch, matching
from crossfuse.align import candidates, quality, retrieval, scan, tasks
from crossfuse.align import store as _store
from crossfuse.align.config import BuildParams, EngineConfig
from crossfuse.align.engine import completed, dask_client
from crossfuse.align.lock import new_token, store_lock
from crossfuse.align.tasks import ScannedPair
from crossfuse.digest import json_sha256
from crossfuse.errors import ManifestError, StoreError
from crossfuse.manifest import Manifest
from crossfuse.progress import Progress, no_progress
from crossfuse.schema import ARRAYS, STATS_GROUP, Counts, CorpusRecord, Dataset, LumaDistances


@dataclass(frozen=True, kw_only=True)
class BuildSummary:
    """What a build did: the corpus ``record`` as stored, whether it ``resumed`` an earlier run,
    and the wall time of each stage (seconds)."""

    store: str
    resumed: bool
    record: CorpusRecord
    seconds: dict[str, float] = field(default_factory=dict)
    #: how an aligned build's selection used its scratch: the most candidate patches with pixels
    #: held at once, blobs rewritten to drop dead ones, pairs read twice, patches in the pool
    scratch: dict[str, Any] = field(default_factory=dict)

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
    #: (fingerprint, scan fingerprint) of the same job run without --skip-bad: its finished
    #: batches hold no bad pair, so a build adding --skip-bad after a refusal resumes them
    without_skip_bad: tuple[str, str] | None = None

    @classmethod
    def of(cls, kind: str, *, scan: dict[str, Any], rest: dict[str, Any], inputs: dict[str, Any],
           skip_bad: bool) -> _Job:
        """The job whose scan is identified by ``scan`` (plus ``skip_bad``) and whose output by
        ``rest`` on top of it."""

        def fingerprints(sb: bool) -> tuple[str, str]:
            scan_fp = json_sha256({**scan, "skip_bad": sb})
            return json_sha256(dict(scan=scan_fp, **rest)), scan_fp

        fp, scan_fp = fingerprints(skip_bad)
        return cls(kind=kind, fingerprint=fp, scan_fingerprint=scan_fp, inputs={**inputs, "skip_bad": skip_bad},
                   without_skip_bad=fingerprints(False) if skip_bad else None)


def build_job(*, target: Manifest, aux: Manifest, params: BuildParams, engine: EngineConfig,
              skip_bad: bool = False) -> _Job:
    """What identifies ``build`` of these inputs: its ``fingerprint`` is the one a finished corpus
    records, so a caller can tell whether a corpus was built from these manifests (by content)
    and settings without building it again."""
    return _Job.of("aligned", scan=dict(kind="aligned", scan="running-threshold", patch=params.patch,
                                        stride=params.stride, batch=engine.batch, target=_manifest.fingerprint(target),
                                        aux=_manifest.fingerprint(aux), target_root=target.root, aux_root=aux.root,
                                        **_dropping(params)),
                   rest=dict(params=params.as_dict()), skip_bad=skip_bad,
                   inputs={"target": _dataset_input(target), "aux": _dataset_input(aux), **params.as_dict()})


def pack_job(*, dataset: Manifest, params: BuildParams, engine: EngineConfig, skip_bad: bool = False) -> _Job:
    """What identifies ``pack`` of these inputs (see :func:`build_job`)."""
    return _Job.of("packed", scan=dict(kind="packed", patch=params.patch, stride=params.stride, batch=engine.batch,
                                       dataset=_manifest.fingerprint(dataset), root=dataset.root, **_dropping(params)),
                   rest=dict(chunk=params.chunk), skip_bad=skip_bad,
                   inputs={"dataset": _dataset_input(dataset), "patch": params.patch, "stride": params.stride,
                           "chunk": params.chunk, **_dropping(params)})


def _check_inputs(*datasets: Manifest, skip_bad: bool, flags: tuple[str, ...] = ()) -> None:
    """What can be checked before anything is written: every dataset lists pairs, its local root
    exists and holds at least one of its files (a wrong root is named with the flag that
    overrides it, ``flags`` per dataset, not met with "pass --skip-bad" after a failed scan), and
    (unless ``skip_bad``) every pair has both partners."""
    import os

    for i, dataset in enumerate(datasets):
        if not dataset.pairs:
            raise ManifestError(f"{dataset.origin} lists no image pairs; a dataset needs at least one.")
        flag = flags[i] if i < len(flags) else "--root"
        if "://" not in dataset.root:
            files = [dataset.url(f) for p in dataset.pairs for f in (p.ir, p.vis) if f]
            if not os.path.isdir(dataset.root):
                raise ManifestError(f"the dataset root {dataset.root} of {dataset.origin} does not exist (or is not a "
                                    f"folder); point {flag} at the folder that holds its images, or put the dataset "
                                    "there.")
            if files and not any(os.path.exists(f) for f in files):
                raise ManifestError(f"none of the {len(files)} image files of {dataset.origin} is under its root "
                                    f"{dataset.root} (the first would be {files[0]}); point {flag} at the folder that "
                                    "holds them.")
        unpaired = [p for p in dataset.pairs if not (p.ir and p.vis)]
        if unpaired and not skip_bad:
            first = ", ".join(f"{p.id!r} ({'infrared' if not p.ir else 'visible'} missing)" for p in unpaired[:3])
            raise ManifestError(f"{dataset.origin}: {len(unpaired)} pair(s) lack a partner: {first}"
                                f"{' ...' if len(unpaired) > 3 else ''}. Add the missing images with the same stem, "
                                "remove the others, or pass --skip-bad to record and skip them.")


def _dataset_input(dataset: Manifest) -> str:
    """How a dataset is named in a store's ``inputs``: where it came from and what it lists."""
    followed = ", symlinks out of its root followed" if dataset.follow_symlinks else ""
    return f"{dataset.origin} ({len(dataset.pairs)} pairs, sha256 {_manifest.fingerprint(dataset)[:12]}{followed})"


def _dataset(manifest: Manifest, scanned: list[ScannedPair], **stats: Any) -> Dataset:
    """The record of a scanned dataset: the sha256 is over the sources actually read."""
    sha = json_sha256([p.source().to_json() for p in scanned])
    return Dataset(name=manifest.name, root=manifest.root, sha256=sha, **stats)


def _changed_sources(url: str, datasets: dict[str, Manifest]) -> list[str]:
    """Pairs of an unfinished build's finished scan batches whose image files changed since they
    were scanned (their sha256 now differs from the one recorded), as ``"ROLE id (side)"``. A
    dataset's path fingerprint covers ids and paths, not content, so a resumed build would
    otherwise mix old patches with new ones. ``datasets``: the dataset each scratch role reads."""
    from crossfuse.digest import file_sha256

    fs, root = fsspec.core.url_to_fs(f"{url.rstrip('/')}/{_store.PARTIAL_GROUP}")
    try:
        blobs = [p for p in fs.find(root) if p.endswith(".npz")]
    except FileNotFoundError:
        return []
    changed, seen = [], set()
    for blob in blobs:
        role, batch = blob[len(root):].strip("/").split("/")[0], blob.rsplit("/", 1)[-1][:-4]
        dataset = datasets.get(role)
        if dataset is None or not batch.isdigit():
            continue
        try:
            _, info = _store.read_batch(url, role, int(batch), names=())
        except Exception:  # a damaged blob: the scan treats it as not done and scans it again
            continue
        for pair in info.get("pairs", []):
            if not isinstance(pair, dict) or (role, pair.get("id")) in seen:
                continue
            seen.add((role, pair.get("id")))
            for side in ("ir", "vis"):
                try:
                    now = file_sha256(dataset.url(pair[side]))
                except (OSError, KeyError, TypeError):
                    now = None
                if now != pair.get(f"{side}_sha256"):
                    changed.append(f"{role} {pair.get('id')} ({side})")
    return changed


def _run(job: _Job, out: str, *, engine: EngineConfig, overwrite: bool, break_lock: bool,
         stages: Callable[..., CorpusRecord], datasets: dict[str, Manifest] | None = None) -> BuildSummary:
    """The skeleton of both commands: take the store's writer lock, open (or resume) the store,
    run ``stages(client, group, clock, facts)`` on the engine to get the corpus record, finalise
    the store with it (``facts``: what the stages report about how they ran, for the summary)."""
    clock = {"start": time.perf_counter()}
    token = new_token()
    facts: dict[str, Any] = {}
    with store_lock(out, break_lock=break_lock):
        group, resumed = _store.open_for_build(out, kind=job.kind, fingerprint=job.fingerprint,
                                               scan_fingerprint=job.scan_fingerprint, inputs=job.inputs,
                                               overwrite=overwrite, token=token, also=job.without_skip_bad)
        changed = _changed_sources(out, datasets or {}) if resumed else []
        if changed:  # resume only what is unchanged: here, nothing scanned can be trusted to match the rest
            warnings.warn(f"{out}: {len(changed)} image file(s) changed since the interrupted build scanned them "
                          f"({', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}); starting the build over "
                          "so that old and new pixels are never mixed.", stacklevel=3)
            _store.remove_unfinished(out)
            group, resumed = _store.open_for_build(out, kind=job.kind, fingerprint=job.fingerprint,
                                                   scan_fingerprint=job.scan_fingerprint, inputs=job.inputs,
                                                   overwrite=overwrite, token=token, also=job.without_skip_bad)
        try:
            with dask_client(engine) as client:
                record = stages(client, group, clock, facts)
        except scan.NothingLeftError:
            if not resumed:  # begun by this call and nothing can come of it: leave nothing behind
                _store.remove_unfinished(out)
            raise
        record = _store.finalize(out, group, record, token)
    clock["end"] = time.perf_counter()
    marks = list(clock)
    seconds = {b: clock[b] - clock[a] for a, b in zip(marks, marks[1:]) if b != "end"}
    seconds["total"] = clock["end"] - clock["start"]
    return BuildSummary(store=out, resumed=resumed, record=record, seconds=seconds, scratch=facts)


@dataclass(frozen=True, kw_only=True)
class _Pixels:
    """Where output rows' pixels are: scratch ``blobs`` (role, batch), and per row the blob
    (``blob_of``) and its row in it (``rows``)."""

    blobs: list[tuple[str, int]]
    blob_of: np.ndarray
    rows: np.ndarray

    def part(self, start: int, stop: int) -> _Pixels:
        return _Pixels(blobs=self.blobs, blob_of=self.blob_of[start:stop], rows=self.rows[start:stop])


def _selection_counts(url: str, pixels: _Pixels) -> np.ndarray:
    """(K, 3, 256) counts of each visible channel of the patches ``pixels`` points at, in order."""
    counts = np.zeros((len(pixels.rows), 3, 256), dtype=np.int64)
    for b in np.unique(pixels.blob_of):
        where = np.flatnonzero(pixels.blob_of == b)
        _, vis, _ = _store.read_pixels(url, *pixels.blobs[int(b)], pixels.rows[where])
        counts[where] = quality.per_patch_counts(vis)
    return counts


def _descriptor_target(params: BuildParams, target_means: np.ndarray,
                       luma: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """What the pool's patches are compared with, and the scale of a luma descriptor: the target's
    mean RGB (``rgb``), or its mean (luma mean, luma sd) divided by their spread over the target's
    patches (``luma``; a component with no spread is not scaled)."""
    if params.descriptor == "rgb":
        return target_means, None
    if luma is None:
        raise StoreError("this store's target scan was made by an older crossfuse, which kept no luma statistics; "
                         "--descriptor luma needs them: rerun with --overwrite.")
    n, s_m, s_m2, s_s, s_s2 = luma
    centre = np.array([s_m / n, s_s / n])
    spread = np.sqrt(np.maximum(np.array([s_m2 / n, s_s2 / n]) - centre ** 2, 0.0))
    scale = np.where(spread > 0, spread, 1.0)
    return centre / scale, scale


def _luma_distances(url: str, pixels: _Pixels, luts: np.ndarray, target: np.ndarray | None,
                    pool: np.ndarray | None) -> LumaDistances | None:
    """W1 of the pixel luma the network sees, from the target's to the pool's and to the
    selection's before and after its tables (None when a scan made by an older crossfuse kept no
    luma histogram)."""
    if target is None or pool is None:
        return None
    before = np.zeros(256, dtype=np.int64)
    after = np.zeros(256, dtype=np.int64)
    for b in np.unique(pixels.blob_of):
        where = np.flatnonzero(pixels.blob_of == b)
        _, vis, _ = _store.read_pixels(url, *pixels.blobs[int(b)], pixels.rows[where])
        before += quality.luma_histogram(vis)
        after += quality.luma_histogram(vis, luts)
    return LumaDistances(pool=quality.histogram_w1(target, pool), before=quality.histogram_w1(target, before),
                         after=quality.histogram_w1(target, after))


def _selected_pixels(client, url: str, aux: Manifest, pool: candidates.PoolScan, chosen: candidates.Candidates,
                     params: BuildParams, engine: EngineConfig, progress: Progress) -> tuple[_Pixels, int]:
    """Where the selected patches' pixels are: in the candidates' blobs, or, for those scanned
    without pixels (``--low-scratch``, IVF), read again from their pairs by a second pass.
    Returns them and how many pairs the second pass read."""
    stashed, batch, rows = candidates.locate(pool, chosen.key)
    blobs = [(_store.CANDIDATES, int(b)) for b in np.unique(batch[stashed])]
    blob_of = np.searchsorted(np.array([b for _, b in blobs], dtype=np.int64), batch)
    missing = np.flatnonzero(~stashed)
    if len(missing):
        plan = _fetch(client, url, aux, pool, chosen.take(missing), engine, progress, patch=params.patch)
        blob_of[missing] = len(blobs) + plan.batch
        rows[missing] = plan.local
        blobs += [(_store.SELECTED, b) for b in range(len(plan.pairs))]
    return _Pixels(blobs=blobs, blob_of=blob_of, rows=rows), len(np.unique(chosen.pair[missing]))


#: Pairs per task of the second pass: few, so that the few pairs it reads spread over the workers
#: (a constant, so that a resumed build finds the batches an earlier run fetched).
FETCH_PAIRS = 4


@dataclass(frozen=True, kw_only=True)
class _FetchPlan:
    """The second pass: per fetch batch, the manifest indices of its pairs, each pair's origins
    and (ir, vis) sha256 as scanned; and per output row its (batch, row in batch)."""

    pairs: list[list[int]]
    origins: list[list[np.ndarray]]
    expected: list[list[tuple[str, str]]]
    batch: np.ndarray
    local: np.ndarray


def _fetch_plan(pool: candidates.PoolScan, chosen: candidates.Candidates, per_batch: int) -> _FetchPlan:
    """Group the ``chosen`` patches (in pool order, so each pair's rows are contiguous) by source
    pair, ``per_batch`` pairs to a fetch task."""
    pair_of = chosen.pair
    scanned = {p.index: p for p in pool.pairs}
    unique = list(dict.fromkeys(int(i) for i in pair_of))
    plan = _FetchPlan(pairs=[], origins=[], expected=[], batch=np.zeros(len(chosen), np.int64),
                      local=np.zeros(len(chosen), np.int64))
    for b, first in enumerate(range(0, len(unique), per_batch)):
        mine = unique[first:first + per_batch]
        rows = np.flatnonzero(np.isin(pair_of, mine))
        plan.batch[rows] = b
        plan.local[rows] = np.arange(len(rows))
        plan.pairs.append(mine)
        plan.origins.append([chosen.origins[pair_of == p] for p in mine])
        plan.expected.append([(scanned[p].ir_sha256, scanned[p].vis_sha256) for p in mine])
    return plan


def _fetch(client, url: str, aux: Manifest, pool: candidates.PoolScan, chosen: candidates.Candidates,
           engine: EngineConfig, progress: Progress, *, patch: int) -> _FetchPlan:
    """Read the ``chosen`` patches' pixels again from the pairs holding them (only those), into the
    scratch role ``selected``; batches kept by an earlier run are not read again."""
    plan = _fetch_plan(pool, chosen, FETCH_PAIRS)
    futures = {}
    for b, pairs in enumerate(plan.pairs):
        if _store.batch_done(url, _store.SELECTED, b):
            continue
        sub = dataclasses.replace(aux, pairs=tuple(aux.pairs[i] for i in pairs))
        futures[client.submit(tasks.fetch_batch, url, b, sub, plan.origins[b], plan.expected[b], patch=patch,
                              pure=False)] = len(pairs)
    total = sum(len(p) for p in plan.pairs)
    with progress("read selected pairs", total) as advance:
        advance(total - sum(futures.values()))
        for future, _ in completed(client, futures, worker_timeout=engine.worker_timeout):
            advance(futures[future])
    return plan


@dataclass(frozen=True, kw_only=True)
class _Rows:
    """The per-patch arrays of the output, in output order."""

    source: np.ndarray
    origin: np.ndarray
    means: np.ndarray
    distance: np.ndarray


def _write(client, group, url: str, out_rows: _Rows, luts: np.ndarray, params: BuildParams, engine: EngineConfig,
           progress: Progress, pixels: _Pixels) -> dict[str, tuple[tuple[int, str], ...]]:
    """Write the per-patch arrays here and the pixel arrays as whole chunks on the engine, each
    chunk recorded with its digest as written when its task returns (a resumed build skips those
    whose objects are still there at their recorded size). Returns every array's chunk digests."""
    n = len(out_rows.source)
    _store.create_arrays(group, n=n, patch=params.patch, chunk=params.chunk)
    group["source"][...] = out_rows.source.astype(np.int32)
    group["origin"][...] = out_rows.origin
    group["means"][...] = out_rows.means.astype(np.float32)
    group["distance"][...] = out_rows.distance.astype(np.float32)
    done = _store.written_chunks(url, group)
    with progress("write patches", n) as advance:
        futures = {}
        for c in range(-(-n // params.chunk)):
            start, stop = c * params.chunk, min(n, (c + 1) * params.chunk)
            if c in done:
                advance(stop - start)
                continue
            part = pixels.part(start, stop)
            futures[client.submit(tasks.write_chunk, url, part.blobs, start, stop, part.blob_of, part.rows, luts,
                                  pure=False)] = c
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


def _transform(params: BuildParams, counts: np.ndarray, target_means: np.ndarray,
               target_hist: np.ndarray | None) -> tuple[list, np.ndarray]:
    """The per-channel fits (gamma and means before and after, as recorded) and the (3, 256)
    tables of ``params.transform`` for the selection's (K, 3, 256) pixel ``counts``."""
    fits = _gamma.fit(counts.sum(axis=0), target_means)
    if params.transform == "gamma":
        return fits, np.stack([_gamma.lut(f.gamma) for f in fits])
    if params.transform == "none":  # the patches as they are
        return [dataclasses.replace(f, gamma=1.0, mean_after=f.mean_before) for f in fits], np.stack(
            [_gamma.lut(1.0)] * 3)
    if target_hist is None:
        raise StoreError("this store's target scan was made by an older crossfuse, which kept no pixel histograms; "
                         "--transform cdf needs them: rerun with --overwrite.")
    luts = histmatch.luts(counts.sum(axis=0), target_hist)
    hist = counts.sum(axis=0).astype(np.float64)
    after = (hist * luts.astype(np.float64)).sum(axis=1) / hist.sum(axis=1)
    return [dataclasses.replace(f, gamma=1.0, mean_after=float(a)) for f, a in zip(fits, after)], luts


def _select(pool: candidates.PoolScan, target_mean: np.ndarray, params: BuildParams,
            target_patches: np.ndarray) -> tuple[candidates.Candidates, float | None, int | None]:
    """The selected patches in pool order (exact: the candidates held are the Top-K; IVF: through
    the index over every patch; random: ``k`` of every patch, drawn with ``select_seed``; match:
    each of ``target_patches``' means takes its share of nearest patches), with the IVF recall
    and lists used."""
    retrieval.check_k(params.k, pool.patches)
    if params.select == "match":
        return pool.candidates.take(matching.match(target_patches, pool.candidates.means, params.k)), None, None
    if params.select == "random":
        rng = np.random.default_rng([params.select_seed, params.k])
        return pool.candidates.take(np.sort(rng.choice(len(pool.candidates), size=params.k, replace=False))), None, None
    if params.index != "ivf":
        return pool.candidates, None, None
    means = pool.candidates.means  # every patch, in pool order
    sel = retrieval.top_k(means, target_mean, params)
    order = np.sort(sel.ids)
    chosen = pool.candidates.take(order)
    chosen.distance = sel.distances[np.argsort(sel.ids)].astype(np.float32)
    return chosen, retrieval.ivf_recall(means, params), sel.nlist


def build(*, target: Manifest, aux: Manifest, out: str, params: BuildParams = BuildParams(),
          engine: EngineConfig = EngineConfig(), overwrite: bool = False, skip_bad: bool = False,
          break_lock: bool = False, progress: Progress = no_progress) -> BuildSummary:
    """Build an aligned corpus at ``out``: the ``params.k`` patches of ``aux`` whose visible RGB
    means are closest (L1) to ``target``'s, gamma-corrected per channel to match them. One build
    per store at a time (``break_lock`` takes over a lock whose holder cannot be checked)."""
    out = _manifest.absolute(out)
    # everything that can be checked before anything is written
    _check_inputs(target, aux, skip_bad=skip_bad, flags=("--target-root", "--aux-root"))
    job = build_job(target=target, aux=aux, params=params, engine=engine, skip_bad=skip_bad)

    def stages(client, group, clock: dict[str, float], facts: dict[str, Any]) -> CorpusRecord:
        # The target first: its mean is every auxiliary task's reference.
        tscan = scan.collect(client, out, scan.submit(client, out, "target", target, params, engine, stash=False,
                                                      skip_bad=skip_bad, label=f"scan target ({target.name})"),
                             params, engine, progress=progress)
        target_means = tscan.means.mean(axis=0)
        centre, scale = _descriptor_target(params, target_means, tscan.luma)
        pool = candidates.scan_pool(client, out, aux, centre, params, engine, pixels=not engine.low_scratch,
                                    skip_bad=skip_bad, progress=progress, label=f"scan auxiliary ({aux.name})",
                                    scale=scale)
        clock["scan"] = time.perf_counter()
        chosen, recall, nlist = _select(pool, target_means, params, tscan.means)
        pixels, reread = _selected_pixels(client, out, aux, pool, chosen, params, engine, progress)
        counts = _selection_counts(out, pixels)
        fits, luts = _transform(params, counts, target_means, tscan.hist)
        w1 = quality.alignment_distances(tscan.means, pool.histogram, chosen.means,
                                         quality.corrected_means(counts, luts))
        w1_luma = _luma_distances(out, pixels, luts, tscan.yhist, pool.yhist)
        facts.update(scratch_patches_peak=pool.peak_stashed, compactions=pool.compactions, pairs_read_twice=reread,
                     pool_patches=pool.patches, candidates_held=len(pool.candidates))
        _write_pool_stats(group, tscan, pool, facts)
        clock["select"] = time.perf_counter()
        source_of_pair = {p.index: s for s, p in enumerate(pool.pairs)}
        rows = _Rows(source=np.array([source_of_pair[int(i)] for i in chosen.pair], dtype=np.int32),
                     origin=chosen.origins, means=chosen.means, distance=chosen.distance)
        chunks = _write(client, group, out, rows, luts, params, engine, progress, pixels=pixels)
        clock["write"] = time.perf_counter()
        problems = tscan.problems + pool.problems
        return CorpusRecord(
            kind="aligned", params=dataclasses.replace(params.record(kind="aligned"), nlist=nlist),
            sources=tuple(p.source() for p in pool.pairs), aux=_dataset(aux, pool.pairs),
            target=_dataset(target, tscan.pairs, means=tuple(float(v) for v in target_means), pairs=len(tscan.pairs),
                            patches=len(tscan.means)),
            gamma=tuple(f.gamma for f in fits),
            gamma_reachable=tuple(f.reachable for f in fits) if params.transform == "gamma" else None,
            luts=tuple(tuple(int(v) for v in lut) for lut in luts) if params.transform == "cdf" else None,
            w1_luma=w1_luma,
            means_before=tuple(f.mean_before for f in fits), means_after=tuple(f.mean_after for f in fits),
            counts=Counts(target_pairs=len(tscan.pairs), target_patches=len(tscan.means), aux_pairs=len(pool.pairs),
                          low_contrast=_dropped(pool.pairs, params),
                          aux_patches=pool.patches, patches=len(chosen), skipped=len(problems)),
            skipped=tuple(problems), ivf_recall=recall, chunks=chunks, w1=w1)

    return _run(job, out, engine=engine, overwrite=overwrite, break_lock=break_lock, stages=stages,
                datasets={"target": target, "aux": aux, _store.CANDIDATES: aux, "pool": aux})


def _write_pool_stats(group, tscan: scan.ScanResult, pool: candidates.PoolScan, facts: dict[str, Any]) -> None:
    """The ``stats`` group the report draws: every target patch mean, the pool's sample, how the build ran."""
    _store.write_stats(group, target_means=tscan.means, pool_means=pool.sample["means"])
    group[STATS_GROUP].attrs.update({"pool_patches": pool.patches, "pool_sample": "uniform by a fixed hash of "
                                     "(pair, patch), at most %d" % candidates.POOL_SAMPLE, "build": facts})


def _dropping(params: BuildParams) -> dict[str, bool]:
    """The fingerprint entry of ``--drop-low-contrast`` (none without it: fingerprints unchanged)."""
    return {"drop_low_contrast": True} if params.drop_low_contrast else {}


def _dropped(pairs, params: BuildParams) -> int | None:
    """Patches left out as low contrast, summed over the scanned pairs (None when not asked)."""
    return sum(p.low_contrast for p in pairs) if params.drop_low_contrast else None


def pack(*, dataset: Manifest, out: str, params: BuildParams = BuildParams(), engine: EngineConfig = EngineConfig(),
         overwrite: bool = False, skip_bad: bool = False, break_lock: bool = False,
         progress: Progress = no_progress) -> BuildSummary:
    """Write every patch of ``dataset`` to a corpus at ``out`` as it is (kind ``packed``)."""
    out = _manifest.absolute(out)
    _check_inputs(dataset, skip_bad=skip_bad)
    job = pack_job(dataset=dataset, params=params, engine=engine, skip_bad=skip_bad)

    def stages(client, group, clock: dict[str, float], facts: dict[str, Any]) -> CorpusRecord:
        result = scan.collect(client, out, scan.submit(client, out, "aux", dataset, params, engine, stash=True,
                                                       drop_low_contrast=params.drop_low_contrast,
                                                       skip_bad=skip_bad, label=f"scan ({dataset.name})"),
                              params, engine, progress=progress)
        clock["scan"] = time.perf_counter()
        n = len(result.means)
        identity = np.tile(np.arange(256, dtype=np.uint8), (3, 1))
        blobs = [("aux", int(b)) for b in range(int(result.batch.max()) + 1)]
        rows = _Rows(source=np.array([{p.index: s for s, p in enumerate(result.pairs)}[int(i)] for i in result.pair],
                                     dtype=np.int32), origin=result.origins, means=result.means,
                     distance=np.zeros(n, np.float32))
        chunks = _write(client, group, out, rows, identity, params, engine, progress,
                        pixels=_Pixels(blobs=blobs, blob_of=result.batch.astype(np.int64), rows=result.local))
        clock["write"] = time.perf_counter()
        means = tuple(float(v) for v in result.means.mean(axis=0))
        return CorpusRecord(kind="packed", params=params.record(kind="packed"),
                            sources=tuple(p.source() for p in result.pairs), aux=_dataset(dataset, result.pairs),
                            target=None, gamma=(1.0, 1.0, 1.0), means_before=means, means_after=means,
                            counts=Counts(aux_pairs=len(result.pairs), aux_patches=n, patches=n,
                                          low_contrast=_dropped(result.pairs, params),
                                          skipped=len(result.problems)),
                            skipped=tuple(result.problems), chunks=chunks)

    return _run(job, out, engine=engine, overwrite=overwrite, break_lock=break_lock, stages=stages,
                datasets={"aux": dataset})
