"""The functions Dask runs: scanning a batch of pairs, and writing one output chunk.

Each takes plain, picklable arguments and opens the store itself, so that it runs the same on
an in-process LocalCluster and on a remote cluster that can reach the store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import zarr

from crossfuse.align import patches as _patches
from crossfuse.align import store as _store
from crossfuse.align.quality import luma_histogram, per_patch_counts
from crossfuse.align.retrieval import first_k, l1_distances
from crossfuse.errors import PairError
from crossfuse.imageio import read_pair
from crossfuse.manifest import Manifest
from crossfuse.digest import object_digest
from crossfuse.schema import Source, chunk_url


@dataclass(frozen=True, kw_only=True)
class ScannedPair:
    """A pair read by the scan: its ``index`` in the manifest, ``id``, relative paths and sha256s,
    image size and number of patches."""

    index: int
    id: str
    ir: str
    vis: str
    ir_sha256: str
    vis_sha256: str
    height: int
    width: int
    patches: int
    low_contrast: int = 0  # patches dropped by --drop-low-contrast

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ScannedPair:
        return cls(**doc)

    def source(self) -> Source:
        """How the corpus records the pair."""
        return Source(id=self.id, ir=self.ir, vis=self.vis, ir_sha256=self.ir_sha256, vis_sha256=self.vis_sha256)


def _cut_pairs(manifest: Manifest, first_pair: int, patch: int, stride: int, problems: list[dict],
               notes: list[dict], dropped: dict[int, int] | None = None):
    """Each readable pair of a batch (numbered from ``first_pair``): (its manifest index, the pair,
    its images, its patch origins, its visible patches); a pair that cannot be read goes to
    ``problems`` instead. A pair smaller than a patch is yielded (with no patch) and also noted
    in ``notes``: recorded as skipped, but not an error. With ``dropped`` (``--drop-low-contrast``)
    low-contrast patches (:func:`patches.low_contrast`) are left out, and their number per pair
    index goes there."""
    for offset, pair in enumerate(manifest.pairs):
        try:
            loaded = read_pair(manifest, pair)
        except PairError as exc:
            problems.append({"id": pair.id, "path": exc.path, "error": str(exc)})
            continue
        height, width = loaded.ir.shape
        if min(height, width) < patch:
            notes.append({"id": pair.id, "path": manifest.url(pair.vis),
                          "error": f"pair {pair.id!r}: {manifest.url(pair.vis)} is {width}x{height}, smaller than the "
                                   f"{patch}x{patch} patch, so it holds no patch (skipped)."})
        origins = _patches.grid(height, width, patch, stride)
        vis = _patches.extract(loaded.vis, origins, patch)
        if dropped is not None:
            keep = ~_patches.low_contrast(vis, _patches.extract(loaded.ir, origins, patch))
            dropped[first_pair + offset] = int(len(keep) - keep.sum())
            origins, vis = origins[keep], vis[keep]
        yield first_pair + offset, pair, loaded, origins, vis


def _scanned(index: int, pair, loaded, patches: int, dropped: dict[int, int] | None) -> dict:
    """A pair's record as the scan read it (:class:`ScannedPair`, as JSON)."""
    height, width = loaded.ir.shape
    return ScannedPair(index=index, id=pair.id, ir=pair.ir, vis=pair.vis, ir_sha256=loaded.ir_sha256,
                       vis_sha256=loaded.vis_sha256, height=height, width=width, patches=patches,
                       low_contrast=(dropped or {}).get(index, 0)).to_json()


def scan_batch(url: str, role: str, batch: int, manifest: Manifest, first_pair: int, *,
               patch: int, stride: int, stash: bool, skip_bad: bool, drop_low_contrast: bool = False) -> list[dict]:
    """Read the pairs of ``manifest`` (a batch, numbered from ``first_pair``), cut their patches,
    and store per-patch origins, RGB means and pair numbers (with ``stash`` also the patches
    themselves) in the scratch group. Returns the problems found; when there are some and
    ``skip_bad`` is off nothing is stored, so a rerun reads the files again.
    """
    problems: list[dict] = []
    notes: list[dict] = []
    pairs_info: list[dict] = []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _store.SCAN_ARRAYS + _store.STASH_ARRAYS}
    dropped: dict[int, int] | None = {} if drop_low_contrast else None
    hist = np.zeros((3, 256), dtype=np.int64)  # the visible pixels' levels per channel (--transform cdf)
    yhist = np.zeros(256, dtype=np.int64)  # and their luma's (the quality numbers)
    luma = np.zeros(5)  # patches, and the sums of luma mean, its square, luma sd, its square (--descriptor luma)
    for index, pair, loaded, origins, vis in _cut_pairs(manifest, first_pair, patch, stride, problems, notes,
                                                        dropped):
        parts["origins"].append(origins)
        parts["means"].append(_patches.channel_means(vis))
        parts["pair"].append(np.full(len(origins), index, dtype=np.int32))
        if stash:
            parts["vis"].append(vis)
            parts["ir"].append(_patches.extract(loaded.ir, origins, patch))
        pairs_info.append(_scanned(index, pair, loaded, len(origins), dropped))
        hist += per_patch_counts(vis).sum(axis=0) if len(vis) else 0
        yhist += luma_histogram(vis) if len(vis) else 0
        stats = _patches.luma_stats(vis)
        luma += [len(stats), *stats[:, 0].sum(keepdims=True), *(stats[:, 0] ** 2).sum(keepdims=True),
                 *stats[:, 1].sum(keepdims=True), *(stats[:, 1] ** 2).sum(keepdims=True)]
    if problems and not skip_bad:
        return problems
    empty = {"origins": ((0, 2), np.int32), "means": ((0, 3), np.float64), "pair": ((0,), np.int32),
             "vis": ((0, 3, patch, patch), np.uint8), "ir": ((0, 1, patch, patch), np.uint8)}
    names = _store.SCAN_ARRAYS + (_store.STASH_ARRAYS if stash else ())
    arrays = {name: np.concatenate(parts[name]) if parts[name] else np.zeros(*empty[name]) for name in names}
    _store.write_batch(url, role, batch, arrays, {"pairs": pairs_info, "problems": problems + notes,
                                                  "hist": hist.tolist(), "yhist": yhist.tolist(),
                                                  "luma": luma.tolist()})
    return problems


#: Pool order of a patch: ``batch << KEY_BITS | row within the batch`` (the order of its global
#: number, without knowing how many patches earlier batches hold).
KEY_BITS = 32

#: What a batch keeps of each candidate, and of each patch of its pool sample: column -> (shape
#: per patch, dtype).
CANDIDATE_COLUMNS = {"key": ((), np.int64), "origins": ((2,), np.int32), "means": ((3,), np.float64),
                     "pair": ((), np.int32), "distance": ((), np.float32)}
SAMPLE_COLUMNS = {"hash": ((), np.uint64), "key": ((), np.int64), "means": ((3,), np.float64)}


def no_rows(columns: dict[str, tuple[tuple[int, ...], type]]) -> dict[str, np.ndarray]:
    """An empty array for each of ``columns`` (:data:`CANDIDATE_COLUMNS`, :data:`SAMPLE_COLUMNS`)."""
    return {name: np.zeros((0,) + shape, dtype) for name, (shape, dtype) in columns.items()}


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A fixed, well-mixed 64-bit hash of each of ``x`` (uint64): the sampling order of patches."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def scan_candidates(url: str, batch: int, manifest: Manifest, first_pair: int, *, patch: int, stride: int,
                    target: np.ndarray, k: int | None, threshold: float, pixels: bool, sample: int,
                    sample_bound: int, skip_bad: bool, drop_low_contrast: bool = False,
                    scale: np.ndarray | None = None) -> list[dict]:
    """Scan one batch of the auxiliary pool for an aligned build, keeping only what selection needs.

    For every patch: its channel sums go into a per-channel histogram (the pool's exact
    distribution of means, for W1), and a hash of (pair, row) decides whether it is among the
    batch's ``sample`` kept for the pool's picture (and only when it is at most ``sample_bound``,
    the largest hash of the build's sample so far: a patch above it cannot enter). Kept as a *candidate* (key, origin, means,
    pair, L1 distance to ``target``) only when it can still be selected: among the batch's first
    ``k`` in (distance, key) order, and no farther than ``threshold``, the K-th distance of the
    candidates the build holds so far (a patch farther than that has K patches before it
    already). With ``k`` None every patch is a candidate (the IVF index needs them all). With
    ``pixels`` the candidates' pixels are stored too (:func:`_write_candidates`). Returns the
    problems found; with some and ``skip_bad`` off nothing is stored."""
    problems: list[dict] = []
    notes: list[dict] = []
    pairs_info: list[dict] = []
    kept: dict[str, list[np.ndarray]] = {n: [] for n in (*CANDIDATE_COLUMNS, "vis", "ir")}
    sums_seen: list[np.ndarray] = []
    sampled: dict[str, list[np.ndarray]] = {n: [] for n in SAMPLE_COLUMNS}
    local = 0
    yhist = np.zeros(256, dtype=np.int64)
    dropped: dict[int, int] | None = {} if drop_low_contrast else None
    for index, pair, loaded, origins, vis in _cut_pairs(manifest, first_pair, patch, stride, problems, notes,
                                                        dropped):
        n = len(origins)
        sums = vis.reshape(n, 3, patch * patch).sum(axis=2, dtype=np.int64)  # n may be 0 (all low-contrast)
        means = sums / float(patch * patch)  # = patches.channel_means, bit for bit
        keys = (np.int64(batch) << KEY_BITS) + local + np.arange(n, dtype=np.int64)
        local += n
        sums_seen.append(sums)
        yhist += luma_histogram(vis) if n else 0
        _sample(sampled, index, keys, means, sample_bound)
        # the descriptor: RGB means, or with ``scale`` (--descriptor luma) the standardised luma stats
        distance = l1_distances(means if scale is None else _patches.luma_stats(vis) / scale, target)
        rows = np.arange(n) if k is None else np.flatnonzero(distance <= threshold)
        if len(rows):
            found = {"key": keys[rows], "origins": origins[rows], "means": means[rows],
                     "pair": np.full(len(rows), index, dtype=np.int32), "distance": distance[rows]}
            if pixels:
                found.update(vis=vis[rows], ir=_patches.extract(loaded.ir, origins[rows], patch))
            for name, values in found.items():
                kept[name].append(values)
            if k is not None:  # hold at most the batch's first k: the pixels never pile up
                _truncate(kept, k)
        if len(sampled["hash"]) > 1:
            _truncate_sample(sampled, sample)
        pairs_info.append(_scanned(index, pair, loaded, n, dropped))
    if problems and not skip_bad:
        return problems
    _truncate_sample(sampled, sample)
    _write_candidates(url, batch, kept, sums_seen, sampled, patch=patch, pixels=pixels, yhist=yhist,
                      info={"pairs": pairs_info, "problems": problems + notes, "k": k, "pixels": bool(pixels)})
    return problems


def _sample(sampled: dict[str, list[np.ndarray]], pair: int, keys: np.ndarray, means: np.ndarray,
            bound: int) -> None:
    """Offer a pair's patches to the pool sample: a patch's hash is fixed by (pair, its row), and
    only those at most ``bound`` can enter."""
    hashes = splitmix64((np.uint64(pair) << np.uint64(32)) + np.arange(len(keys), dtype=np.uint64))
    enters = hashes <= np.uint64(bound)
    for name, values in (("hash", hashes), ("key", keys), ("means", means)):
        sampled[name].append(values[enters])


def _write_candidates(url: str, batch: int, kept: dict[str, list[np.ndarray]], sums_seen: list[np.ndarray],
                      sampled: dict[str, list[np.ndarray]], *, patch: int, pixels: bool, info: dict,
                      yhist: np.ndarray) -> None:
    """Store a scanned batch: its candidates' pixels first (or remove a blob an earlier scan of it
    left), then its statistics: candidates, per-channel histogram of sums, sample, and ``info``."""
    empty = {**no_rows(CANDIDATE_COLUMNS), "vis": np.zeros((0, 3, patch, patch), np.uint8),
             "ir": np.zeros((0, 1, patch, patch), np.uint8)}
    arrays = {name: np.concatenate(v) if v else empty[name] for name, v in kept.items()}
    if pixels and len(arrays["key"]):
        _store.write_pixels(url, _store.CANDIDATES, batch, arrays["key"], arrays["vis"], arrays["ir"])
    else:  # a blob from an earlier scan of this batch (another K) must not outlive it
        _store.remove_batch(url, _store.CANDIDATES, batch)
    sums = np.concatenate(sums_seen) if sums_seen else np.zeros((0, 3), np.int64)
    stats = {name: arrays[name] for name in CANDIDATE_COLUMNS}
    for c in range(3):
        stats[f"sums{c}"], stats[f"counts{c}"] = np.unique(sums[:, c], return_counts=True)
    blank = no_rows(SAMPLE_COLUMNS)
    stats.update({f"sample_{name}": np.concatenate(v) if v else blank[name] for name, v in sampled.items()})
    stats["yhist"] = yhist
    _store.write_batch(url, "aux", batch, stats, {**info, "patches": len(sums)})


def _truncate(kept: dict[str, list[np.ndarray]], k: int) -> None:
    """Keep the first ``k`` rows of ``kept`` in (distance, key) order, in key order."""
    whole = {name: np.concatenate(v) for name, v in kept.items() if v}
    if len(whole["key"]) <= k:
        kept.update({name: [v] for name, v in whole.items()})
        return
    rows = np.sort(first_k(whole["key"], whole["distance"], k))
    kept.update({name: [v[rows]] for name, v in whole.items()})


def _truncate_sample(sampled: dict[str, list[np.ndarray]], size: int) -> None:
    """Keep the ``size`` patches with the smallest hashes (a uniform sample, whatever the batches),
    in key order."""
    if not sampled["hash"]:
        return
    whole = {name: np.concatenate(v) for name, v in sampled.items()}
    rows = np.sort(np.argsort(whole["hash"], kind="stable")[:size])
    sampled.update({name: [v[rows]] for name, v in whole.items()})


def write_chunk(url: str, blobs: list[tuple[str, int]], start: int, stop: int, blob_of: np.ndarray,
                rows: np.ndarray, luts: np.ndarray) -> tuple[int, dict[str, list]]:
    """Write output rows ``start:stop`` of ``vis`` and ``ir``: row ``start + i`` is patch
    ``rows[i]`` of the scratch blob ``blobs[blob_of[i]]`` (role, batch), its visible channels
    passed through ``luts`` (3, 256) uint8. The range must be exactly one whole chunk (or the
    array's last one), so that no two tasks ever write the same chunk. Returns the number of rows
    written and the (size, sha256) of the two chunk objects as stored."""
    group = zarr.open_group(store=url, mode="r+")
    vis_out, ir_out = group["vis"], group["ir"]
    chunk = vis_out.chunks[0]
    assert start % chunk == 0 and (stop - start == chunk or stop == vis_out.shape[0]), (start, stop, chunk)
    assert ir_out.chunks[0] == chunk and len(blob_of) == len(rows) == stop - start
    vis = np.empty((stop - start,) + vis_out.shape[1:], dtype=np.uint8)
    ir = np.empty((stop - start,) + ir_out.shape[1:], dtype=np.uint8)
    for b in np.unique(blob_of):
        where = np.flatnonzero(blob_of == b)
        _, vis[where], ir[where] = _store.read_pixels(url, *blobs[int(b)], rows[where])
    for c in range(3):
        vis[:, c] = luts[c][vis[:, c]]
    vis_out[start:stop] = vis
    ir_out[start:stop] = ir
    index = start // chunk
    return stop - start, {name: list(object_digest(chunk_url(url, arr, index)))
                          for name, arr in (("vis", vis_out), ("ir", ir_out))}


def fetch_batch(url: str, batch: int, manifest: Manifest, origins: list[np.ndarray],
                expected: list[tuple[str, str]], *, patch: int) -> int:
    """The second pass of a build: read again the pairs of ``manifest`` (those holding selected
    patches), cut the patches at ``origins`` (one (n_i, 2) array per pair) and keep them, in that
    order, as batch ``batch`` of the scratch role ``store.SELECTED``. ``expected`` gives each
    pair's (ir, vis) sha256 as the first pass read them: a file changed since then is an error
    naming it. Returns the number of patches kept."""
    vis_parts, ir_parts = [], []
    for pair, where, (ir_sha, vis_sha) in zip(manifest.pairs, origins, expected):
        loaded = read_pair(manifest, pair)
        for side, rel, was, now in (("infrared", pair.ir, ir_sha, loaded.ir_sha256),
                                    ("visible", pair.vis, vis_sha, loaded.vis_sha256)):
            if was != now:
                raise PairError(f"{side} image {manifest.url(rel)} of pair {pair.id!r} changed while the build ran "
                                f"(sha256 {was} when scanned, {now} now); restore it and rerun the build, or pass "
                                "--overwrite to start over from the files as they are.",
                                pair_id=pair.id, path=manifest.url(rel))
        vis_parts.append(_patches.extract(loaded.vis, where, patch))
        ir_parts.append(_patches.extract(loaded.ir, where, patch))
    arrays = {"vis": np.concatenate(vis_parts), "ir": np.concatenate(ir_parts)}
    _store.write_batch(url, _store.SELECTED, batch, arrays, {"pairs": [p.id for p in manifest.pairs]})
    return len(arrays["vis"])
