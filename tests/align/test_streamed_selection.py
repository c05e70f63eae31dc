"""Selection over a pool streamed in blocks (O(K) memory): the exact global Top-K, ties broken by
the lower id, whatever the blocks; the same as the build's FAISS selection on real patch means."""

from __future__ import annotations

import numpy as np
import pytest

from crossfuse.align.config import BuildParams
from crossfuse.align.retrieval import l1_distances, streamed_top_k, top_k


def _oracle(means, target, k):
    d = np.abs(means.astype(np.float32) - target.astype(np.float32)).sum(1, dtype=np.float32)
    order = np.lexsort((np.arange(len(d)), d))[:k]
    return order, d[order]


def _blocks(x, sizes):
    edges = np.cumsum([0] + list(sizes))
    return [x[a:b] for a, b in zip(edges[:-1], edges[1:])]


@pytest.mark.parametrize("sizes", [(1000,), (1, 999), (7, 300, 13, 680), (250, 250, 250, 250)])
def test_streamed_equals_the_exact_top_k_with_ties(sizes):
    rng = np.random.default_rng(5)
    means = rng.integers(100, 110, size=(1000, 3)).astype(np.float64)  # few distinct values: many ties
    target = np.array([104.0, 105.0, 103.0])
    ids, distances = _oracle(means, target, 120)
    got = streamed_top_k(_blocks(means, sizes), target, 120)
    assert np.array_equal(got.ids, ids) and np.array_equal(got.distances, distances)


def test_streamed_equals_the_builds_selection_on_real_patch_means(sample_corpus):
    import zarr

    from crossfuse.schema import STATS_GROUP, open_corpus

    group, record = open_corpus(sample_corpus[0])
    pool = zarr.open_group(sample_corpus[0], mode="r")[STATS_GROUP]["pool_means"][...].astype(np.float64)
    target = np.asarray(record.target.means)
    k = record.params.k
    faiss_sel = top_k(pool, target, BuildParams(k=k))
    got = streamed_top_k(_blocks(pool, (100, 37, len(pool) - 137)), target, k)
    assert np.array_equal(np.sort(got.ids), np.sort(faiss_sel.ids))
    assert np.array_equal(got.distances, faiss_sel.distances)
    assert np.allclose(np.sort(got.distances), np.sort(group["distance"][...]))


def test_l1_is_faiss_bit_for_bit_and_short_pools_are_refused():
    import faiss

    rng = np.random.default_rng(0)
    x = rng.random((20000, 3)) * 255
    t = np.array([145.24, 151.52, 151.44])
    index = faiss.IndexFlat(3, faiss.METRIC_L1)
    index.add(x.astype(np.float32))
    d, i = index.search(t[None].astype(np.float32), 500)
    assert np.array_equal(l1_distances(x, t)[i[0]], d[0])
    with pytest.raises(ValueError, match="only 20000 patches"):
        streamed_top_k([x[:10000], x[10000:]], t, 20001)
