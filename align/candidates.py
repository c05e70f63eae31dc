"""Scanning the auxiliary pool with a running threshold: scratch and driver memory follow K.

The target is scanned first, so its mean is known before any auxiliary task runs. Auxiliary
batches are then submitted a few at a time, each given the K-th distance of the candidates
held so far; a task keeps only the patches that can still beat it (``tasks.scan_candidates``).
As tasks complete, this process merges their candidates into the first K in (distance, key)
order, the exact global Top-K whatever the order the tasks finish in (a patch of the global
Top-K always beats every threshold, since each one is a K-th distance over part of the pool),
and rewrites or deletes candidate pixel blobs whose patches can no longer win. What is held
here: K candidates, the pool's histogram of channel sums (exact W1, bounded by 255 P^2 bins)
and a uniform sample of the pool's patch means (for the report), never one row per patch.

A batch scanned for K serves any K' <= K (the Top-K' is within the Top-K), so a rerun with a
smaller K reuses the scan; a larger K scans the batches again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crossfuse.align import store as _store
from crossfuse.align import retrieval, scan, tasks
from crossfuse.align.config import BuildParams, EngineConfig
from crossfuse.align.engine import completed
from crossfuse.align.quality import MeanHistogram
from crossfuse.align.tasks import CANDIDATE_COLUMNS, KEY_BITS, SAMPLE_COLUMNS, ScannedPair, no_rows
from crossfuse.manifest import Manifest
from crossfuse.progress import Progress
from crossfuse.schema import Problem

#: Patches of the pool kept (a uniform, seeded sample) for the report's pictures of the pool.
POOL_SAMPLE = 20_000
#: Candidate columns (what a scan task keeps of each candidate).
COLUMNS = tuple(CANDIDATE_COLUMNS)


@dataclass
class Candidates:
    """Patches that can still be selected: ``key`` (pool order), ``origins`` (n, 2), ``means``
    (n, 3), ``pair`` (manifest index), ``distance`` (L1, float32 as FAISS computes it)."""

    key: np.ndarray
    origins: np.ndarray
    means: np.ndarray
    pair: np.ndarray
    distance: np.ndarray

    @classmethod
    def empty(cls) -> Candidates:
        return cls(**no_rows(CANDIDATE_COLUMNS))

    def __len__(self) -> int:
        return len(self.key)

    def take(self, rows: np.ndarray) -> Candidates:
        return Candidates(**{name: getattr(self, name)[rows] for name in COLUMNS})

    def merged(self, other: Candidates, k: int | None) -> Candidates:
        """The first ``k`` (all with None) of both in (distance, key) order, returned in key order."""
        both = Candidates(**{name: np.concatenate([getattr(self, name), getattr(other, name)]) for name in COLUMNS})
        rows = np.arange(len(both)) if k is None else retrieval.first_k(both.key, both.distance, k)
        return both.take(rows[np.argsort(both.key[rows], kind="stable")])

    def threshold(self, k: int) -> float:
        """The distance a new patch must not exceed to be a candidate: the K-th smallest held."""
        return float(np.partition(self.distance, k - 1)[k - 1]) if len(self) >= k else float("inf")


@dataclass
class PoolScan:
    """What an aligned build keeps of its auxiliary pool."""

    candidates: Candidates
    histogram: MeanHistogram
    sample: dict[str, np.ndarray]
    pairs: list[ScannedPair]
    problems: list[Problem]
    patches: int
    #: batches merged in, and those whose own statistics blob is not yet in the checkpoint (bytes)
    batches: set[int] = field(default_factory=set)
    loose: dict[int, int] = field(default_factory=dict)
    checkpoint_bytes: int = 0
    #: pool keys held by each candidate pixel blob (batch -> sorted keys)
    pixels: dict[int, np.ndarray] = field(default_factory=dict)
    #: what the scratch held: the most candidate pixels at once, and blobs rewritten to drop dead rows
    peak_stashed: int = 0
    compactions: int = 0
    #: the pool's luma histogram (256,), None when a batch scanned by an older crossfuse lacks it
    yhist: np.ndarray | None = field(default_factory=lambda: np.zeros(256, dtype=np.int64))

    @classmethod
    def empty(cls, patch: int) -> PoolScan:
        return cls(candidates=Candidates.empty(), histogram=MeanHistogram(patch), sample=no_rows(SAMPLE_COLUMNS),
                   pairs=[], problems=[], patches=0)

    @property
    def stashed(self) -> int:
        return sum(len(v) for v in self.pixels.values())

    def sample_bound(self) -> int:
        """The hash a patch's must not exceed to enter the pool sample (all, until it is full)."""
        held = self.sample["hash"]
        return int(np.max(held)) if len(held) >= POOL_SAMPLE else 2 ** 64 - 1

    def merge_sample(self, sample: dict[str, np.ndarray]) -> None:
        both = {name: np.concatenate([self.sample[name], sample[name].astype(self.sample[name].dtype)])
                for name in self.sample}
        rows = np.argsort(both["hash"], kind="stable")[:POOL_SAMPLE]
        rows = rows[np.argsort(both["key"][rows], kind="stable")]  # in pool order
        self.sample = {name: v[rows] for name, v in both.items()}


def stash_budget(k: int) -> int:
    """Candidate patches with pixels the scan stashes before K candidates are known: K and an
    eighth (batches scanned once they are known stash regardless: what they keep beats the
    K-th distance, and is few)."""
    return k + max(k // 8, 32)


def _reusable(info: dict, k: int, ivf: bool) -> bool:
    """Whether a scanned batch (or the checkpoint) serves this build: made for every patch (k
    None), or for K >= k."""
    return info.get("k") is None or (not ivf and isinstance(info.get("k"), int) and info["k"] >= k)


def scan_pool(client, url: str, aux: Manifest, target_mean: np.ndarray, params: BuildParams, engine: EngineConfig, *,
              pixels: bool, skip_bad: bool, progress: Progress, label: str,
              scale: np.ndarray | None = None) -> PoolScan:
    """Scan ``aux`` batch by batch with a running threshold; see the module's docstring. With
    ``params.index`` "ivf" every patch is kept (statistics only). ``pixels`` off keeps no pixels
    (the selected patches are then read again after selection)."""
    ivf = params.every_patch  # IVF retrieval or a random draw: every patch's statistics, no pixels
    k = None if ivf else params.k
    pixels = pixels and not ivf
    batches = scan.batches(aux, engine.batch)
    state = _resume(url, len(batches), params, ivf, k)
    todo = [b for b in range(len(batches)) if b not in state.batches]
    limit = max(2, 2 * sum(client.nthreads().values()))
    futures: dict = {}
    found: list[dict] = []
    target = np.asarray(target_mean, dtype=np.float64)
    stashing: dict[int, int] = {}  # batches in flight that stash every patch: their expected patches

    def submit_next() -> None:
        b = todo.pop(0)
        first, sub = batches[b]
        threshold = state.candidates.threshold(k) if k is not None else float("inf")
        keep = pixels and (threshold < float("inf") or _within_budget(state, b, len(sub.pairs), k, stashing))
        futures[client.submit(tasks.scan_candidates, url, b, sub, first, patch=params.patch, stride=params.stride,
                              target=target, k=k, threshold=threshold, pixels=keep, sample=POOL_SAMPLE,
                              sample_bound=state.sample_bound(), skip_bad=skip_bad,
                              drop_low_contrast=params.drop_low_contrast, scale=scale, pure=False)] = b

    with progress(label, len(aux.pairs)) as advance:
        advance(sum(len(batches[b][1].pairs) for b in state.batches))
        while todo and len(futures) < limit:
            submit_next()
        for future, problems in completed(client, futures, worker_timeout=engine.worker_timeout):
            b = futures.pop(future)  # what is left is in flight
            stashing.pop(b, None)
            found.extend(problems)
            if not problems or skip_bad:
                _merge(url, state, b, k)
            advance(len(batches[b][1].pairs))
            if todo:
                submit_next()
    if not skip_bad:
        scan.raise_problems(found)
    state.pairs.sort(key=lambda p: p.index)
    position = {p.id: i for i, p in enumerate(aux.pairs)}
    state.problems.sort(key=lambda p: position.get(p.id, -1))
    if state.patches == 0:
        scan.explain_empty(aux, state.pairs, params, state.problems)
    return state


def _within_budget(state: PoolScan, batch: int, pairs: int, k: int, stashing: dict[int, int]) -> bool:
    """Before K candidates are known every patch is one: a batch stashes its pixels only while what
    is stashed and in flight stays within :func:`stash_budget` (recorded in ``stashing``); the
    others keep statistics, and their pairs are read again for the patches they give the selection."""
    per_pair = state.patches / len(state.pairs) if state.pairs else float(k)
    expected = int(min(k, pairs * per_pair))
    if state.stashed + sum(stashing.values()) + expected > stash_budget(k):
        return False
    stashing[batch] = expected
    return True


def _merge(url: str, state: PoolScan, batch: int, k: int | None) -> None:
    """Take a finished batch in: its statistics, its candidate pixels; drop dead pixels, and
    checkpoint the statistics when the batches' own blobs have grown."""
    keys = _absorb(url, state, batch, k)
    if _store.batch_done(url, _store.CANDIDATES, batch):
        state.pixels[batch] = keys
    state.peak_stashed = max(state.peak_stashed, state.stashed)
    _compact(url, state, k)
    if sum(state.loose.values()) > max(CHECKPOINT_MIN, state.checkpoint_bytes):
        _checkpoint(url, state, k)


#: The merged statistics are written to one checkpoint (and the batches' own blobs deleted) once
#: those blobs hold more than this many bytes, or more than the last checkpoint: the scratch's
#: statistics stay about one checkpoint (K candidates, the histogram, the sample, the pairs).
CHECKPOINT_MIN = 1 << 20
_CHECKPOINT = ("pool", 0)


def _resume(url: str, n_batches: int, params: BuildParams, ivf: bool, k: int | None) -> PoolScan:
    """The pool's state as an earlier run left it: its checkpoint (when made for this K or a
    larger one), then the batches scanned since, each when made for this K or a larger one;
    anything else is scanned again."""
    state = PoolScan.empty(params.patch)
    if _store.batch_done(url, *_CHECKPOINT):
        arrays, info = _store.read_batch(url, *_CHECKPOINT, None)
        if _reusable(info, params.k, ivf):
            _add_statistics(state, arrays, k)
            state.pairs = [ScannedPair.from_json(p) for p in info["pairs"]]
            state.problems = [Problem(**p) for p in info["problems"]]
            state.patches, state.batches = int(info["patches"]), set(info["batches"])
            state.checkpoint_bytes = _store.batch_bytes(url, *_CHECKPOINT)
        else:  # made for a smaller K: its batches are scanned again
            _store.remove_batch(url, *_CHECKPOINT)
    for b in range(n_batches):
        if b in state.batches:
            _store.remove_batch(url, "aux", b)  # in the checkpoint already (a crash before its deletion)
            continue
        blob = _read_done(url, b)
        if blob is not None and _reusable(blob[1], params.k, ivf):
            _absorb(url, state, b, k, blob)
    for b in state.batches:  # as an earlier run may have compacted them
        held = _store.pixel_keys(url, _store.CANDIDATES, b)
        if held is not None and len(held):
            state.pixels[b] = held
    _compact(url, state, k)
    return state


def _checkpoint(url: str, state: PoolScan, k: int | None) -> None:
    """Write the merged statistics as one compressed blob, then delete the batches' own."""
    arrays = {n: getattr(state.candidates, n) for n in COLUMNS}
    for c in range(3):
        sums, counts = state.histogram.sums(c)
        arrays[f"sums{c}"], arrays[f"counts{c}"] = sums, counts
    arrays.update({f"sample_{name}": v for name, v in state.sample.items()})
    if state.yhist is not None:
        arrays["yhist"] = state.yhist
    info = {"k": k, "batches": sorted(state.batches), "patches": state.patches,
            "pairs": [p.to_json() for p in state.pairs], "problems": [p.to_json() for p in state.problems]}
    state.checkpoint_bytes = _store.write_batch(url, *_CHECKPOINT, arrays, info, compressed=True)
    for b in list(state.loose):
        _store.remove_batch(url, "aux", b)
    state.loose.clear()


def _read_done(url: str, batch: int) -> tuple[dict[str, np.ndarray], dict] | None:
    """A batch's statistics blob as an earlier run left it, or None (absent, of an older layout,
    or damaged: the batch is scanned again)."""
    if not _store.batch_done(url, "aux", batch):
        return None
    try:
        return _store.read_batch(url, "aux", batch, None)
    except Exception:
        return None


def _absorb(url: str, state: PoolScan, batch: int, k: int | None,
            blob: tuple[dict[str, np.ndarray], dict] | None = None) -> np.ndarray:
    """Merge a finished batch's statistics (``blob`` when already read) into ``state``; returns
    its candidates' keys."""
    arrays, info = blob if blob is not None else _store.read_batch(url, "aux", batch, None)
    _add_statistics(state, arrays, k)
    state.pairs.extend(ScannedPair.from_json(p) for p in info["pairs"])
    state.problems.extend(Problem(**p, dataset="aux") for p in info["problems"])
    state.patches += int(info["patches"])
    state.batches.add(batch)
    state.loose[batch] = _store.batch_bytes(url, "aux", batch)
    return arrays["key"]


def _add_statistics(state: PoolScan, arrays: dict[str, np.ndarray], k: int | None) -> None:
    """Merge the arrays of a batch's statistics blob, or of the checkpoint (same layout), into
    ``state``: candidates, histogram of channel sums, pool sample."""
    state.candidates = state.candidates.merged(Candidates(**{n: arrays[n] for n in COLUMNS}), k)
    for c in range(3):
        state.histogram.add(c, arrays[f"sums{c}"], arrays[f"counts{c}"])
    state.merge_sample({name: arrays[f"sample_{name}"] for name in state.sample})
    state.yhist = state.yhist + arrays["yhist"] if state.yhist is not None and "yhist" in arrays else None


def _compact(url: str, state: PoolScan, k: int | None) -> None:
    """Drop candidate pixels that can no longer be selected: delete blobs with no live patch, and
    rewrite those at least half dead with their live patches only. Every blob kept is then at
    least half live, so the scratch holds at most twice the K live candidates (plus batches not
    yet merged), and each patch is copied a few times at most (its blob halves each time)."""
    if k is None or not state.pixels:
        return
    live_keys = state.candidates.key
    for b, keys in list(state.pixels.items()):
        live = np.isin(keys, live_keys)
        dead = len(keys) - int(np.count_nonzero(live))
        if dead * 2 < len(keys):
            continue
        if dead == len(keys):
            _store.remove_batch(url, _store.CANDIDATES, b)
            del state.pixels[b]
        else:
            state.pixels[b] = _store.keep_pixels(url, _store.CANDIDATES, b, live)
        state.compactions += 1


def locate(state: PoolScan, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``keys`` (selected candidates): whether its pixels are in a candidate blob, that
    blob's batch, and the row within it."""
    found = np.zeros(len(keys), bool)
    batch = (keys >> KEY_BITS).astype(np.int64)
    rows = np.zeros(len(keys), np.int64)
    for b in np.unique(batch):
        held = state.pixels.get(int(b))
        if held is None:
            continue
        where = np.flatnonzero(batch == b)
        pos = np.searchsorted(held, keys[where])
        ok = (pos < len(held)) & (held[np.minimum(pos, len(held) - 1)] == keys[where])
        found[where[ok]] = True
        rows[where[ok]] = pos[ok]
    return found, batch, rows
