"""Patches, gamma and retrieval against plain re-statements, on real sample data."""

import numpy as np
import pytest

from crossfuse.align import BuildParams, gamma, patches, retrieval
from crossfuse.align.quality import per_patch_counts
from crossfuse.errors import ParameterError
from crossfuse.imageio import read_pair
from tests.helpers import plain_lut


@pytest.fixture(scope="module")
def image(sample_aux):
    loaded = read_pair(sample_aux, sample_aux.pairs[4])  # 640x480 MSRS
    return loaded.vis[:473, :601]  # awkward size


@pytest.mark.parametrize("patch,stride", [(64, 200), (64, 64), (37, 23), (601, 1), (700, 5)])
def test_grid_and_extract_match_loops(image, patch, stride):
    h, w = image.shape[:2]
    expected = [(y, x) for y in range(0, h - patch + 1, stride) for x in range(0, w - patch + 1, stride)]
    origins = patches.grid(h, w, patch, stride)
    assert [tuple(o) for o in origins] == expected
    cut = patches.extract(image, origins, patch)
    assert cut.shape == (len(expected), 3, patch, patch)
    for (y, x), p in zip(expected[:5], cut):
        assert np.array_equal(p.transpose(1, 2, 0), image[y:y + patch, x:x + patch])


def test_means_and_histograms(image):
    cut = patches.extract(image, patches.grid(*image.shape[:2], 64, 100), 64)
    means = patches.channel_means(cut)
    for p, m in zip(cut, means):
        assert np.allclose(m, p.reshape(3, -1).astype(np.float64).mean(1), atol=1e-12)
    counts = per_patch_counts(cut).sum(axis=0)  # the selection's histogram, as the gamma fit gets it
    for c in range(3):
        assert np.array_equal(counts[c], sum(np.bincount(p[c].ravel(), minlength=256) for p in cut))
    assert counts.sum() == cut.size


def test_lut_is_the_paper_formula():
    for g in (0.5, 1.0, 1.7651, 3.2):
        assert np.array_equal(gamma.lut(g), plain_lut(g))
    assert np.array_equal(gamma.lut(1.0), np.arange(256))


@pytest.mark.parametrize("target", [60.0, 120.3, 151.5, 200.0])
def test_gamma_fit_is_optimal_against_a_dense_search(image, target):
    hist = np.bincount(image[..., 1].ravel(), minlength=256)
    fit = gamma.fit_channel(hist, target)
    assert fit.reachable
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 40001))
    errors = np.array([abs(gamma.mean_after(hist, g) - target) for g in grid])
    assert abs(fit.mean_after - target) <= errors.min() + 1e-9
    assert fit.mean_after == pytest.approx(gamma.mean_after(hist, fit.gamma))
    assert fit.mean_before == pytest.approx(image[..., 1].mean())
    assert abs(fit.mean_after - target) < 0.02  # a full image has fine enough steps


def test_gamma_unreachable_target_is_flagged():
    hist = np.zeros(256)
    hist[[10, 20]] = 5
    fit = gamma.fit_channel(hist, 254.9)
    assert not fit.reachable and fit.mean_after < 254.9


def test_top_k_matches_argsort(sample_aux, image):
    cut = patches.extract(image, patches.grid(*image.shape[:2], 16, 16), 16)
    means = patches.channel_means(cut)
    target = np.array([90.0, 100.0, 80.0])
    sel = retrieval.top_k(means, target, BuildParams(k=100))
    dist = np.abs(means - target).sum(1)
    order = np.argsort(dist, kind="stable")[:100]
    assert set(sel.ids) == set(order)
    assert np.allclose(sel.distances, dist[sel.ids], atol=1e-3)
    assert np.all(np.diff(sel.distances) >= 0)


def test_top_k_breaks_ties_by_id():
    means = np.array([[1, 1, 1]] * 5 + [[0, 0, 0]], dtype=np.float32)
    sel = retrieval.top_k(means, np.zeros(3), BuildParams(k=3))
    assert sel.ids.tolist() == [5, 0, 1]


def test_k_larger_than_pool_is_a_clear_error():
    with pytest.raises(ParameterError, match="only 6 patches"):
        retrieval.top_k(np.zeros((6, 3)), np.zeros(3), BuildParams(k=7))


def test_ivf_recall_is_measured(image):
    cut = patches.extract(image, patches.grid(*image.shape[:2], 8, 8), 8)
    means = patches.channel_means(cut)
    recall = retrieval.ivf_recall(means, BuildParams(k=50, index="ivf", nlist=16, nprobe=16))
    assert recall == pytest.approx(1.0)  # probing every list is exact
    assert 0.0 < retrieval.ivf_recall(means, BuildParams(k=50, index="ivf", nlist=64, nprobe=1)) <= 1.0
