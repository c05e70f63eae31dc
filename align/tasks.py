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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ScannedPair:
        return cls(**doc)

    def source(self) -> Source:
        """How the corpus records the pair."""
        return Source(id=self.id, ir=self.ir, vis=self.vis, ir_sha256=self.ir_sha256, vis_sha256=self.vis_sha256)


def scan_batch(url: str, role: str, batch: int, manifest: Manifest, first_pair: int, *,
               patch: int, stride: int, stash: bool, skip_bad: bool) -> list[dict]:
    """Read the pairs of ``manifest`` (a batch, numbered from ``first_pair``), cut their patches,
    and store per-patch origins, RGB means and pair numbers (with ``stash`` also the patches
    themselves) in the scratch group. Returns the problems found; when there are some and
    ``skip_bad`` is off nothing is stored, so a rerun reads the files again.
    """
    problems: list[dict] = []
    pairs_info: list[dict] = []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _store.SCAN_ARRAYS + _store.STASH_ARRAYS}
    for offset, pair in enumerate(manifest.pairs):
        try:
            loaded = read_pair(manifest, pair)
        except PairError as exc:
            problems.append({"id": pair.id, "path": exc.path, "error": str(exc)})
            continue
        height, width = loaded.ir.shape
        origins = _patches.grid(height, width, patch, stride)
        vis = _patches.extract(loaded.vis, origins, patch)
        parts["origins"].append(origins)
        parts["means"].append(_patches.channel_means(vis))
        parts["pair"].append(np.full(len(origins), first_pair + offset, dtype=np.int32))
        if stash:
            parts["vis"].append(vis)
            parts["ir"].append(_patches.extract(loaded.ir, origins, patch))
        pairs_info.append(ScannedPair(index=first_pair + offset, id=pair.id, ir=pair.ir, vis=pair.vis,
                                      ir_sha256=loaded.ir_sha256, vis_sha256=loaded.vis_sha256, height=height,
                                      width=width, patches=len(origins)).to_json())
    if problems and not skip_bad:
        return problems
    empty = {"origins": ((0, 2), np.int32), "means": ((0, 3), np.float64), "pair": ((0,), np.int32),
             "vis": ((0, 3, patch, patch), np.uint8), "ir": ((0, 1, patch, patch), np.uint8)}
    names = _store.SCAN_ARRAYS + (_store.STASH_ARRAYS if stash else ())
    arrays = {name: np.concatenate(parts[name]) if parts[name] else np.zeros(*empty[name]) for name in names}
    _store.write_batch(url, role, batch, arrays, {"pairs": pairs_info, "problems": problems})
    return problems


def write_chunk(url: str, role: str, start: int, stop: int, batches: np.ndarray, rows: np.ndarray,
                luts: np.ndarray) -> tuple[int, dict[str, list]]:
    """Write output rows ``start:stop`` of ``vis`` and ``ir``: row ``start + i`` is patch
    ``rows[i]`` of scan batch ``batches[i]``, its visible channels passed through ``luts``
    (3, 256) uint8. The range must be exactly one whole chunk (or the array's last one), so
    that no two tasks ever write the same chunk. Returns the number of rows written and the
    (size, sha256) of the two chunk objects as stored."""
    group = zarr.open_group(store=url, mode="r+")
    vis_out, ir_out = group["vis"], group["ir"]
    chunk = vis_out.chunks[0]
    assert start % chunk == 0 and (stop - start == chunk or stop == vis_out.shape[0]), (start, stop, chunk)
    assert ir_out.chunks[0] == chunk and len(batches) == len(rows) == stop - start
    vis = np.empty((stop - start,) + vis_out.shape[1:], dtype=np.uint8)
    ir = np.empty((stop - start,) + ir_out.shape[1:], dtype=np.uint8)
    for batch in np.unique(batches):
        where = np.flatnonzero(batches == batch)
        data, _ = _store.read_batch(url, role, int(batch), ("vis", "ir"))
        vis[where] = data["vis"][rows[where]]
        ir[where] = data["ir"][rows[where]]
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
