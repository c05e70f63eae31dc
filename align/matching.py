"""``--select match``: K pool patches whose distribution follows the target's, not its centre.

The rule, exactly. The target has T patches, in scan order ``t_0 .. t_{T-1}``, each with its RGB
means; the pool has N patches with theirs, numbered in pool order. Each target patch has a quota:
``K // T``, plus one for the first ``K mod T`` target patches. Selection goes in rounds
``r = 1, 2, ...``: in each round every target patch whose quota is at least ``r``, in scan
order, takes its nearest pool patch (L1 distance of the means, float32 as FAISS computes it;
ties by the lower pool number) that no one has taken yet. After the last round exactly K
distinct patches are taken. So every target patch is represented in proportion, in a way that
does not depend on which patch asks first beyond the stated order.

Scale: one exact FAISS search of the T target patches against the N pool patches' means (every
pool patch's statistics are kept, as for ``--index ivf``, and the pixels of the chosen ones are
read by a second pass). Each target patch asks for ``quota + margin`` neighbours; when patches
taken by others exhaust a list, that patch's search is repeated with a longer list, so the result
equals :func:`match_brute` (tested).
"""

from __future__ import annotations

import numpy as np

from crossfuse.align.retrieval import _as_faiss, check_k, l1_distances, make_index


def quotas(targets: int, k: int) -> np.ndarray:
    """How many pool patches each of ``targets`` target patches takes: K // T, plus one for the first K mod T."""
    q = np.full(targets, k // targets, dtype=np.int64)
    q[:k % targets] += 1
    return q


def match_brute(target: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    """The rule of the module docstring, computed directly (every distance): the oracle."""
    check_k(k, len(pool))
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
