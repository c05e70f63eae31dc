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


def top_k(means: np.ndarray, target: np.ndarray, params: BuildParams) -> Selection:
    """The ``params.k`` rows of ``means`` (N, 3) with the smallest L1 distance to ``target`` (3,),
    through the index ``params.index`` (with ``params.nlist``/``nprobe`` for IVF)."""
    k, index = params.k, params.index
    n = len(means)
    if k > n:
        raise ParameterError(
            f"K = {k} but the auxiliary set has only {n} patches at this patch size and stride; "
            f"lower -k to at most {n} (the scan is kept, and rerunning with another -k reuses it), "
            "or add auxiliary data, or use a smaller --stride.")
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
    order = np.lexsort((ids, distances))[:k]
    return Selection(ids=ids[order].astype(np.int64), distances=distances[order].astype(np.float32),
                     nlist=ivf_lists(n, params.nlist) if index == "ivf" else None)


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
