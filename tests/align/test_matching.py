"""--select match: the FAISS path takes exactly the patches the rule's direct computation takes,
on random data with ties and on the sample's real patch means."""

import numpy as np
import pytest

from crossfuse.align import matching


@pytest.mark.parametrize("targets,pool,k,levels", [(5, 40, 12, 256), (7, 30, 30, 4), (3, 100, 50, 2),
                                                  (40, 60, 25, 8), (1, 20, 20, 256)])
def test_the_faiss_path_equals_the_brute_force_rule(targets, pool, k, levels):
    rng = np.random.default_rng(targets * 1000 + pool)
    for trial in range(5):
        t = rng.integers(0, levels, (targets, 3)).astype(np.float64)  # few levels: many ties
        p = rng.integers(0, levels, (pool, 3)).astype(np.float64)
        got = matching.match(t, p, k, margin=2)  # a small margin: the lists run out and are asked again
        assert np.array_equal(got, matching.match_brute(t, p, k)), (trial, got)
        assert len(np.unique(got)) == k


def test_quotas_sum_to_k_and_spread_the_extras_systematically():
    assert matching.quotas(4, 10).tolist() == [2, 3, 2, 3]
    assert matching.quotas(5, 3).tolist() == [1, 0, 1, 0, 1]
    assert matching.quotas(10, 2).tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    for t, k in ((7, 3), (100, 37), (3, 100)):
        q = matching.quotas(t, k)
        assert q.sum() == k and q.max() - q.min() <= 1


@pytest.mark.parametrize("k", [25, 100, 333])
def test_the_order_of_the_target_makes_no_difference(k):
    """The review's finding: reversing the target's pairs changed 72 of 100 patches. Now any
    permutation of the target patches takes the same K, by both paths."""
    rng = np.random.default_rng(k)
    target = rng.integers(0, 64, (150, 3)).astype(np.float64)  # ties among the target's means too
    pool = rng.integers(0, 64, (900, 3)).astype(np.float64)
    first = matching.match(target, pool, k)
    for trial in range(4):
        shuffled = target[rng.permutation(len(target))] if trial else target[::-1]
        assert np.array_equal(matching.match(shuffled, pool, k), first)
        assert np.array_equal(matching.match_brute(shuffled, pool, k), first)


def test_match_follows_a_spread_target_where_topk_keeps_its_centre():
    from crossfuse.align.retrieval import l1_distances

    rng = np.random.default_rng(2)
    pool = rng.uniform(0, 255, (3000, 3))
    target = np.concatenate([rng.normal(60, 5, (50, 3)), rng.normal(200, 5, (50, 3))])  # two clusters
    chosen = pool[matching.match(target, pool, 200)]
    topk = pool[np.argsort(l1_distances(pool, target.mean(axis=0)), kind="stable")[:200]]
    near = lambda x, c: np.abs(x - c).sum(axis=1) < 100  # noqa: E731  (L1 over three channels)
    assert near(chosen, 60).sum() >= 90 and near(chosen, 200).sum() >= 90  # both clusters, about half each
    assert near(topk, 60).sum() == near(topk, 200).sum() == 0  # the centre (130) lies between them
