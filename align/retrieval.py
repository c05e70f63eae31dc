"""Top-K retrieval of the auxiliary patches closest to the target statistics (paper step 4).

Distance of a patch = sum over channels of |patch mean - target mean| (L1), computed by a FAISS
index over the auxiliary per-patch RGB means: ``IndexFlat(3, METRIC_L1)`` (exact) or an
``IndexIVFFlat`` for very large pools, whose recall against exact search can be measured.
Ties are broken by the lower patch number, so the selection is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossfuse.align.config import BuildParams
from crossfuse.errors import ParameterError


@dataclass(frozen=True, kw_only=True)
class Selection:
    """The K retrieved patches: ``ids`` (K,) int64 row numbers into the auxiliary pool, sorted by
    ``distances`` (K,) float32 (L1 in grey levels) then by id."""

    ids: np.ndarray
    distances: np.ndarray
    nlist: int | None = None  # IVF lists actually used (FAISS wants about 39 points per list)


def _as_faiss(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def ivf_lists(n: int, requested: int) -> int:
    """The IVF lists used for ``n`` points: ``requested``, but at most one per ~39 points (FAISS
    trains each list on at least 39 points)."""
    return max(1, min(requested, n // 39 or 1))


def make_index(means: np.ndarray, *, index: str, nlist: int = 0, nprobe: int = 0):
    """A FAISS index over ``means`` (N, 3) float; ``index`` is "flat" (exact) or "ivf" (with
    ``nlist`` lists, ``nprobe`` of them probed; BuildParams holds their defaults)."""
    import faiss

    data = _as_faiss(means)
    dim = data.shape[1]
    if index == "flat":
        idx = faiss.IndexFlat(dim, faiss.METRIC_L1)
    elif index == "ivf":
        nlist = ivf_lists(len(data), nlist)
        quantizer = faiss.IndexFlat(dim, faiss.METRIC_L1)
        idx = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_L1)
        idx.train(data)
        idx.nprobe = min(nprobe, nlist)
    else:
        raise ParameterError(f"unknown index {index!r}; use 'flat' or 'ivf'.")
    idx.add(data)
    return idx


def check_k(k: int, n: int) -> None:
    """Refuse a K larger than the pool of ``n`` patches, saying what to do."""
    if k > n:
        raise ParameterError(
            f"K = {k} but the auxiliary set has only {n} patches at this patch size and stride; "
            f"lower -k to at most {n} (the scan is kept, and rerunning with a smaller -k reuses it), "
            "or add auxiliary data, or use a smaller --stride.")


def top_k(means: np.ndarray, target: np.ndarray, params: BuildParams) -> Selection:
    """The ``params.k`` rows of ``means`` (N, 3) with the smallest L1 distance to ``target`` (3,),
    through the index ``params.index`` (with ``params.nlist``/``nprobe`` for IVF)."""
    k, index = params.k, params.index
    n = len(means)
    check_k(k, n)
    idx = make_index(means, index=index, nlist=params.nlist, nprobe=params.nprobe)
    # Ask a little past K so that ties at the K-th distance are all seen, then break them by id.
    want = min(n, k + 64)
    distances, ids = idx.search(_as_faiss(target[None, :]), want)
    distances, ids = distances[0], ids[0]
    keep = ids >= 0  # FAISS pads with -1 when it finds fewer than asked (IVF)
    distances, ids = distances[keep], ids[keep]
    if len(ids) < k:
        raise ParameterError(
            f"the {index} index returned only {len(ids)} of K = {k} patches; raise --nprobe or use the "
            "exact flat index (the scan is kept, and rerunning with other index options reuses it).")
    order = first_k(ids, distances, k)
    return Selection(ids=ids[order].astype(np.int64), distances=distances[order].astype(np.float32),
                     nlist=ivf_lists(n, params.nlist) if index == "ivf" else None)


def first_k(ids: np.ndarray, distances: np.ndarray, k: int) -> np.ndarray:
    """Positions of the first ``k`` rows in (distance, id) order: the selection's order, ties at
    a distance broken by the lower id (pool order). Every Top-K in crossfuse goes through it."""
    return np.lexsort((ids, distances))[:k]


def l1_distances(means: np.ndarray, target: np.ndarray) -> np.ndarray:
    """L1 distance of each row of ``means`` (n, 3) to ``target`` (3,), in float32 exactly as FAISS's
    ``IndexFlat(3, METRIC_L1)`` computes it (both cast to float32 first; tested equal)."""
    diff = np.abs(_as_faiss(means) - _as_faiss(target)[None, :])
    total = diff[:, 0]
    for c in range(1, diff.shape[1]):  # left to right, in float32, as FAISS sums (any dimension)
        total = total + diff[:, c]
    return total


def block_candidates(means: np.ndarray, target: np.ndarray, k: int, *, offset: int = 0) -> Selection:
    """The first ``k`` rows of one block of the pool in (distance, id) order, ids counted from
    ``offset``. A row of the global Top-K is always among its block's first K in that order (fewer
    than K rows precede it in the whole pool, so fewer in its block), so merging the blocks'
    candidates gives the exact global Top-K whatever the blocks: O(K) memory per block."""
    d = l1_distances(means, target)
    n = len(d)
    if n > k:
        kth = np.partition(d, k - 1)[k - 1]
        rows = np.flatnonzero(d <= kth)  # every tie at the K-th distance, so ids can break them
    else:
        rows = np.arange(n)
    order = first_k(rows, d[rows], k)
    return Selection(ids=(rows[order] + offset).astype(np.int64), distances=d[rows[order]])


def merge_candidates(a: Selection, b: Selection, k: int) -> Selection:
    """The first ``k`` of two candidate sets in (distance, id) order (ids distinct)."""
    ids = np.concatenate([a.ids, b.ids])
    distances = np.concatenate([a.distances, b.distances])
    order = first_k(ids, distances, k)
    return Selection(ids=ids[order], distances=distances[order])


def streamed_top_k(blocks, target: np.ndarray, k: int) -> Selection:
    """The exact Top-K (ties broken by the lower id) over a pool given as ``blocks``, an iterable
    of (n_i, 3) arrays in pool order, holding at most K candidates and one block at a time."""
    best = Selection(ids=np.zeros(0, np.int64), distances=np.zeros(0, np.float32))
    offset = 0
    for block in blocks:
        best = merge_candidates(best, block_candidates(block, target, k, offset=offset), k)
        offset += len(block)
    if len(best.ids) < k:
        raise ParameterError(f"K = {k} but the pool has only {offset} patches; lower -k to at most {offset}.")
    return best


def ivf_recall(means: np.ndarray, params: BuildParams, *, queries: int = 32, seed: int = 0) -> float:
    """Recall@K of the IVF index of ``params`` against exact search, over ``queries`` pool points
    used as queries."""
    rng = np.random.default_rng(seed)
    q = _as_faiss(means[rng.choice(len(means), size=min(queries, len(means)), replace=False)])
    k = min(params.k, len(means))
    exact = make_index(means, index="flat").search(q, k)[1]
    approx = make_index(means, index="ivf", nlist=params.nlist, nprobe=params.nprobe).search(q, k)[1]
    hits = sum(len(np.intersect1d(a[a >= 0], e)) for a, e in zip(approx, exact))
    return hits / float(exact.size)
