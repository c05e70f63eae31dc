"""``--select match``: K pool patches whose distribution follows the target's, not its centre.

The rule, exactly. The target has T patches, each with its RGB means; the pool has N patches with
theirs, numbered in pool order. The target patches are first put in a canonical order that does
not depend on the order of the target's pairs: by the luma of their means
(0.299 R + 0.587 G + 0.114 B), then R, G, B (patches with equal means are interchangeable: they
ask for the same neighbours). In that order ``s_0 .. s_{T-1}`` each has a quota: ``K // T``, plus
one for a systematic sample of ``R = K mod T`` of them, those at positions ``floor((j + 1/2) T / R)``
for j = 0 .. R-1 (every T/R-th along the luma order, so when K < T the K patches that ask span the
target's distribution rather than its first pairs). Selection goes in rounds ``r = 1, 2, ...``:
in each round every target patch whose quota is at least ``r``, in canonical order, takes its
nearest pool patch (L1 distance of the means, float32 as FAISS computes it; ties by the lower
pool number) that no one has taken yet. After the last round exactly K distinct patches are
taken, and the same K whatever the order of the target's pairs (tested by permuting them).

When it coincides with Top-K: each target patch takes pool patches near itself, Top-K those near
the target's mean. If the whole target lies beyond one end of the pool's distribution (brighter
than almost every pool patch, say), every target patch's nearest pool patches are the pool's
brightest ones, the same ones nearest the mean, and both selections are the pool's K brightest.
They part as soon as the target spreads over the pool's range, or K is small against the
pool.

Scale: one exact FAISS search of the T target patches against the N pool patches' means (every
pool patch's statistics are kept, as for ``--index ivf``, and the pixels of the chosen ones are
read by a second pass). Each target patch asks for ``quota + margin`` neighbours; when patches
taken by others exhaust a list, that patch's search is repeated with a longer list, so the result
equals :func:`match_brute` (tested).
"""

from __future__ import annotations

import numpy as np

from crossfuse.align.retrieval import _as_faiss, check_k, l1_distances, make_index


def canonical(target: np.ndarray) -> np.ndarray:
    """The target patches' RGB means (T, 3) in the canonical order of the module docstring: by
    luma of the means, then R, G, B."""
    target = np.asarray(target)
    luma = 0.299 * target[:, 0] + 0.587 * target[:, 1] + 0.114 * target[:, 2]
    return target[np.lexsort((target[:, 2], target[:, 1], target[:, 0], luma))]


def quotas(targets: int, k: int) -> np.ndarray:
    """How many pool patches each of ``targets`` target patches (in canonical order) takes: K // T,
    plus one for the R = K mod T at positions floor((j + 1/2) T / R), a systematic sample."""
    q = np.full(targets, k // targets, dtype=np.int64)
    extra = k % targets
    if extra:
        q[((np.arange(extra) + 0.5) * targets / extra).astype(np.int64)] += 1
    return q


def match_brute(target: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    """The rule of the module docstring, computed directly (every distance): the oracle."""
    check_k(k, len(pool))
    target = canonical(target)
    q = quotas(len(target), k)
    order = [np.lexsort((np.arange(len(pool)), l1_distances(pool, t))) for t in target]
    taken = np.zeros(len(pool), dtype=bool)
    pos = np.zeros(len(target), dtype=np.int64)
    chosen = []
    for r in range(1, int(q.max(initial=0)) + 1):
        for i in np.flatnonzero(q >= r):
            while taken[order[i][pos[i]]]:
                pos[i] += 1
            chosen.append(int(order[i][pos[i]]))
            taken[order[i][pos[i]]] = True
    return np.sort(np.array(chosen, dtype=np.int64))


def match(target: np.ndarray, pool: np.ndarray, k: int, *, margin: int = 16) -> np.ndarray:
    """The rule of the module docstring through one FAISS search (see there); returns the K pool
    numbers taken, sorted."""
    check_k(k, len(pool))
    n = len(pool)
    target = canonical(target)
    q = quotas(len(target), k)
    index = make_index(pool, index="flat")
    asked = np.minimum(n, q + margin)
    lists = _neighbours(index, target, int(asked.max()), n)
    asked[:] = int(asked.max())
    taken = np.zeros(n, dtype=bool)
    pos = np.zeros(len(target), dtype=np.int64)
    chosen = []
    for r in range(1, int(q.max(initial=0)) + 1):
        for i in np.flatnonzero(q >= r):
            while True:
                if pos[i] >= len(lists[i]):  # all of its list taken (or dropped as ties): ask for more
                    asked[i] = min(n, 2 * asked[i] + margin)
                    lists[i] = _neighbours(index, target[i:i + 1], int(asked[i]), n)[0]
                    continue
                p = lists[i][pos[i]]
                if not taken[p]:
                    break
                pos[i] += 1
            chosen.append(int(p))
            taken[p] = True
    return np.sort(np.array(chosen, dtype=np.int64))


def _neighbours(index, queries: np.ndarray, want: int, n: int) -> list[np.ndarray]:
    """Per query, a prefix of all pool numbers in (distance, number) order, of about ``want``
    entries. FAISS returns the nearest ``want`` but picks among ties at the last distance its own
    way; so, unless it returned the whole pool, entries at that last distance are dropped (the rest
    is then exactly the start of the full order; :func:`match` asks again when it runs out)."""
    distances, ids = index.search(_as_faiss(queries), min(n, want))
    out = []
    for d, i in zip(distances, ids):
        keep = i >= 0
        d, i = d[keep], i[keep]
        order = np.lexsort((i, d))
        d, i = d[order], i[order]
        if len(i) < n:
            i = i[d < d[-1]]
        out.append(i.astype(np.int64))
    return out
