"""W1 alignment quality: the distance itself against plain oracles, and what a build records
(computed from the store's own patches, printed by build and inspect)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from crossfuse.align.quality import MeanHistogram, corrected_means, per_patch_counts, wasserstein1
from crossfuse.schema import STATS_GROUP, CorpusRecord, open_corpus


def test_w1_of_equal_sized_samples_is_the_mean_gap_of_their_sorted_values():
    rng = np.random.default_rng(1)
    a, b = rng.normal(100, 20, 500), rng.gamma(2.0, 30.0, 500)
    assert wasserstein1(a, b) == pytest.approx(np.mean(np.abs(np.sort(a) - np.sort(b))), rel=1e-12)


def test_w1_of_unequal_samples_against_a_fine_quantile_integral():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 301), rng.normal(0.7, 2, 127)
    q = (np.arange(301 * 127) + 0.5) / (301 * 127)  # W1 = integral over q of |F_a^-1(q) - F_b^-1(q)|
    inv = lambda s: np.sort(s)[np.minimum((q * len(s)).astype(int), len(s) - 1)]  # noqa: E731
    assert wasserstein1(a, b) == pytest.approx(np.mean(np.abs(inv(a) - inv(b))), rel=1e-9)
    assert wasserstein1(a, a + 3.0) == pytest.approx(3.0)
    assert wasserstein1(a, a) == 0.0
    with pytest.raises(ValueError):
        wasserstein1(a, [])


def test_w1_against_a_histogram_is_w1_against_its_samples_bit_for_bit():
    rng = np.random.default_rng(3)
    area = 64 * 64
    sums = rng.integers(0, 255 * area, size=(5000, 3))  # patch channel sums, as the scan sees them
    target = rng.normal(120, 30, 300)
    hist = MeanHistogram(64)
    for part in np.array_split(sums, 37):  # batches of the pool, merged as they complete
        for c in range(3):
            hist.add(c, *np.unique(part[:, c], return_counts=True))
    assert hist.patches == 5000
    for c in range(3):
        values, counts = hist.channel(c)
        assert np.array_equal(np.repeat(values, counts), np.sort(sums[:, c] / float(area)))
        assert wasserstein1(target, values, b_counts=counts) == wasserstein1(target, sums[:, c] / float(area))


def test_per_patch_counts_and_corrected_means_match_the_patches(sample_corpus):
    url, _ = sample_corpus
    vis = zarr.open_group(url, mode="r")["vis"][:40]
    counts = per_patch_counts(vis)
    for i in (0, 17, 39):
        for c in range(3):
            assert np.array_equal(counts[i, c], np.bincount(vis[i, c].ravel(), minlength=256))
    lut = np.stack([np.clip(np.arange(256) + d, 0, 255) for d in (10, 0, -7)]).astype(np.uint8)
    expected = np.stack([lut[c][vis[:, c]].reshape(len(vis), -1).mean(1) for c in range(3)], axis=1)
    assert np.allclose(corrected_means(counts, lut), expected)


def test_a_build_records_w1_from_its_target_pool_and_stored_patches(sample_corpus):
    url, summary = sample_corpus
    group, record = open_corpus(url)
    stats = group[STATS_GROUP]
    target, pool = stats["target_means"][...], stats["pool_means"][...]
    assert target.shape == (record.counts.target_patches, 3) and pool.shape == (record.counts.aux_patches, 3)
    assert np.allclose(target.mean(0), record.target.means, atol=1e-3)
    selection = group["means"][...].astype(np.float64)
    stored = group["vis"][...].reshape(len(selection), 3, -1).mean(2)
    for c in range(3):
        assert record.w1.pool[c] == pytest.approx(wasserstein1(target[:, c], pool[:, c]), rel=1e-5)
        assert record.w1.before[c] == pytest.approx(wasserstein1(target[:, c], selection[:, c]), rel=1e-5)
        assert record.w1.after[c] == pytest.approx(wasserstein1(target[:, c], stored[:, c]), rel=1e-5)
    # Top-K by closeness to the target's mean: the selection is nearer the target than the pool.
    assert all(b < p for b, p in zip(record.w1.before, record.w1.pool))
    assert summary.record.w1 == record.w1
    assert CorpusRecord.from_json(record.to_json(), "x").w1 == record.w1


def test_a_packed_corpus_records_no_w1(tmp_path, sample_target, sample_params, engine):
    from crossfuse.align import pack

    summary = pack(dataset=sample_target, out=str(tmp_path / "p.zarr"), params=sample_params, engine=engine)
    assert summary.record.w1 is None and "w1" not in summary.record.to_json()
