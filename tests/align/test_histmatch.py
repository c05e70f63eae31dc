"""--transform cdf's tables are the monotone tables whose output histogram is closest to the
target's in W1: checked against every monotone table of small histograms."""

import itertools

import numpy as np
import pytest

from crossfuse.align import histmatch


def _monotone_tables(n, m):
    """Every non-decreasing map from n source levels to m output levels."""
    for combo in itertools.combinations_with_replacement(range(m), n):
        yield np.array(combo)


@pytest.mark.parametrize("n,m", [(4, 4), (5, 3), (3, 6), (6, 6)])
def test_the_table_is_the_best_monotone_one(n, m):
    rng = np.random.default_rng(n * 10 + m)
    for trial in range(40):
        p = rng.integers(0, 5, n).astype(float)
        q = rng.integers(0, 5, m).astype(float)
        if trial % 5 == 0:
            p[rng.integers(0, n)] = 0  # empty levels make ties
        if p.sum() == 0 or q.sum() == 0:
            continue
        best = min(histmatch.w1(histmatch.apply(t, p, m), q) for t in _monotone_tables(n, m))
        lut = histmatch.match(p, q)
        assert np.all(np.diff(lut) >= 0) and lut.min() >= 0 and lut.max() < m
        assert histmatch.w1(histmatch.apply(lut, p, m), q) == pytest.approx(best, abs=1e-12), (p, q, lut)


def test_matching_a_histogram_to_itself_is_the_identity_and_shifts_are_found():
    rng = np.random.default_rng(0)
    p = rng.integers(1, 100, 256).astype(float)
    assert np.array_equal(histmatch.match(p, p), np.arange(256))
    shifted = np.roll(np.concatenate([p[:200], np.zeros(56)]), 40)  # the same shape, 40 levels up
    lut = histmatch.match(np.concatenate([p[:200], np.zeros(56)]), shifted)
    assert np.array_equal(lut[:200], np.arange(200) + 40)
    assert histmatch.w1(histmatch.apply(lut, np.concatenate([p[:200], np.zeros(56)])), shifted) == pytest.approx(0)
