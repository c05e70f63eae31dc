"""--select and --transform (issue 22): the data-volume control (K random patches) and the
released script's effective behaviour (Top-K without the gamma), on the bundled sample."""

import numpy as np
import pytest
import zarr

from crossfuse import manifest
from crossfuse.align import BuildParams, build
from crossfuse.align.retrieval import l1_distances
from crossfuse.imageio import read_pair
from crossfuse.schema import open_corpus
from tests.helpers import SAMPLE_AUX, SAMPLE_PARAMS, SAMPLE_TARGET, source_patches


def _build(tmp_path, name, engine, **options):
    out = str(tmp_path / f"{name}.zarr")
    build(target=manifest.load(str(SAMPLE_TARGET)), aux=manifest.load(str(SAMPLE_AUX)), out=out,
          params=BuildParams(**SAMPLE_PARAMS, **options), engine=engine)
    return zarr.open_group(out, mode="r"), open_corpus(out)[1]


def _grid(spec):
    """Every 64x64 patch (stride 64) of a dataset, pair by pair: (pair id, origins, visible patches)."""
    from crossfuse.align.patches import extract, grid

    data = manifest.load(str(spec))
    for pair in data.pairs:
        vis = read_pair(data, pair).vis
        origins = grid(*vis.shape[:2], 64, 64)
        yield pair.id, origins, extract(vis, origins, 64)


def _cut(spec, stat):
    """``stat`` of every patch of a dataset, stacked, and where each is: ((n, ...), [(id, y, x)])."""
    stats, where = [], []
    for pair_id, origins, vis in _grid(spec):
        stats.append(stat(vis))
        where += [(pair_id, int(y), int(x)) for y, x in origins]
    return np.concatenate(stats), where


def test_transform_none_writes_the_topk_patches_as_they_are(tmp_path, sample_corpus, engine):
    group, record = _build(tmp_path, "none", engine, transform="none")
    paper = zarr.open_group(sample_corpus[0], mode="r")
    assert np.array_equal(group["origin"][...], paper["origin"][...])  # the same Top-K
    assert np.array_equal(group["vis"][...], source_patches(group, record))  # untouched pixels
    assert not np.array_equal(group["vis"][...], paper["vis"][...])    # the paper's are gamma-corrected
    assert record.gamma == (1.0, 1.0, 1.0) and record.means_after == record.means_before
    assert record.params.transform == "none" and record.params.select == "topk"
    assert record.w1.after == record.w1.before and record.gamma_reachable is None


def test_select_random_draws_k_uniformly_with_its_seed(tmp_path, sample_corpus, engine):
    group, record = _build(tmp_path, "random", engine, select="random", select_seed=3)
    again, _ = _build(tmp_path, "again", engine, select="random", select_seed=3)
    other, _ = _build(tmp_path, "other", engine, select="random", select_seed=4)
    keys = [set(map(tuple, np.column_stack([g["source"][...], g["origin"][...]]))) for g in (group, again, other)]
    assert len(keys[0]) == SAMPLE_PARAMS["k"] and keys[0] == keys[1] and keys[0] != keys[2]
    assert record.params.select == "random" and record.params.select_seed == 3
    # The stored distances are the true L1 distances to the target's mean; random ones lie farther
    # on average than the paper's Top-K, which are the K smallest.
    means = source_patches(group, record).reshape(len(keys[0]), 3, -1).mean(axis=2)
    expected = l1_distances(means, np.asarray(record.target.means))
    assert np.allclose(group["distance"][...], expected, atol=1e-3)
    topk = zarr.open_group(sample_corpus[0], mode="r")["distance"][...]
    assert group["distance"][...].mean() > topk.mean() and group["distance"][...].min() >= 0
    # Gamma still applies by default: the corrected means reach the target's.
    assert np.allclose(record.means_after, record.target.means, atol=1.0)


def test_the_paper_default_is_recorded_and_old_fingerprints_hold(sample_corpus):
    _, record = open_corpus(sample_corpus[0])
    assert record.params.select == "topk" and record.params.transform == "gamma" and record.params.select_seed is None
    assert "select" not in BuildParams(**SAMPLE_PARAMS).as_dict()  # what resumes and fingerprints see: unchanged


def _pixel_hist(vis):
    from crossfuse.align.quality import per_patch_counts

    return per_patch_counts(vis).sum(axis=0)


def test_transform_cdf_matches_the_selection_to_the_targets_pixels(tmp_path, sample_corpus, engine):
    from crossfuse.align import histmatch

    group, record = _build(tmp_path, "cdf", engine, transform="cdf")
    source = source_patches(group, record)
    luts = np.array(record.luts, dtype=np.uint8)
    assert np.array_equal(group["vis"][...], np.stack([luts[c][source[:, c]] for c in range(3)], axis=1))
    # The tables are the W1-closest monotone matches of the selection's pixels to every target pixel
    # of every target patch, recomputed here from the images.
    hist = sum(_pixel_hist(vis) for _, _, vis in _grid(SAMPLE_TARGET))
    assert np.array_equal(luts, histmatch.luts(_pixel_hist(source), hist))
    # Per channel the pixels end closer to the target's than untouched or gamma-corrected ones.
    paper = zarr.open_group(sample_corpus[0], mode="r")["vis"][...]
    for c in range(3):
        cdf, none, gamma = (histmatch.w1(_pixel_hist(v)[c], hist[c]) for v in (group["vis"][...], source, paper))
        assert cdf < none and cdf < gamma, (c, cdf, none, gamma)
    assert record.params.transform == "cdf" and record.gamma == (1.0, 1.0, 1.0)
    # The report names the stored patches after their transform (it said "after gamma" for any).
    from crossfuse.align import report

    means = report._means(group, record)
    assert "after cdf" in means and "after gamma" not in means
    assert np.allclose(means["after cdf"], group["vis"][...].reshape(len(source), 3, -1).mean(axis=2))


def test_select_match_takes_what_the_rule_takes_on_the_sample(tmp_path, engine):
    from crossfuse.align import matching
    from crossfuse.align.patches import channel_means

    target, _ = _cut(SAMPLE_TARGET, channel_means)
    pool, where = _cut(SAMPLE_AUX, channel_means)
    expected = {where[i] for i in matching.match_brute(target, pool, SAMPLE_PARAMS["k"])}
    group, record = _build(tmp_path, "match", engine, select="match")
    got = {(record.sources[s].id, int(y), int(x)) for s, (y, x) in zip(group["source"][...], group["origin"][...])}
    assert got == expected and record.params.select == "match"
    # It follows the target's spread: its W1 to the target's patch means beats the Top-K's before any transform.
    _, topk = _build(tmp_path, "topk", engine, transform="none")
    assert sum(record.w1.before) < sum(topk.w1.before)


def test_the_luma_w1_is_what_the_network_sees(tmp_path, engine):
    def luma(vis):
        y = 0.299 * vis[:, 0].astype(float) + 0.587 * vis[:, 1] + 0.114 * vis[:, 2]
        return np.bincount(np.floor(y + 0.5).astype(int).ravel(), minlength=256)

    def w1(a, b):
        return float(np.abs(np.cumsum(a / a.sum()) - np.cumsum(b / b.sum())).sum())

    target, pool = (sum(luma(vis) for _, _, vis in _grid(spec)) for spec in (SAMPLE_TARGET, SAMPLE_AUX))
    for transform in ("gamma", "cdf"):
        group, record = _build(tmp_path, transform, engine, transform=transform)
        got = record.w1_luma
        assert got.pool == pytest.approx(w1(target, pool), abs=1e-9)
        assert got.before == pytest.approx(w1(target, luma(source_patches(group, record))), abs=1e-9)
        assert got.after == pytest.approx(w1(target, luma(group["vis"][...])), abs=1e-9)
    assert got.after < got.before  # histogram matching brings what the network sees closer


def test_descriptor_luma_ranks_by_standardised_luma_level_and_contrast(tmp_path, engine):
    from crossfuse.align.patches import luma_stats
    from crossfuse.align.retrieval import first_k

    target, _ = _cut(SAMPLE_TARGET, luma_stats)
    pool, where = _cut(SAMPLE_AUX, luma_stats)
    scale = target.std(axis=0)
    distance = l1_distances(pool / scale, target.mean(axis=0) / scale)
    expected = {where[i] for i in first_k(np.arange(len(pool)), distance, SAMPLE_PARAMS["k"])}
    group, record = _build(tmp_path, "luma", engine, descriptor="luma")
    got = {(record.sources[s].id, int(y), int(x)) for s, (y, x) in zip(group["source"][...], group["origin"][...])}
    assert got == expected and record.params.descriptor == "luma"
    assert np.allclose(np.sort(group["distance"][...]), np.sort(distance[list(first_k(
        np.arange(len(pool)), distance, SAMPLE_PARAMS["k"]))]), atol=1e-4)
    with pytest.raises(Exception, match="descriptor luma works with --select topk"):
        BuildParams(**SAMPLE_PARAMS, descriptor="luma", select="match")


def test_select_match_is_the_same_with_the_target_pairs_reversed(tmp_path, engine):
    """Built end to end from the sample with the target manifest's pairs in reverse order, with K
    below the target's patch count (the case where the old rule depended on the order)."""
    import json

    doc = json.loads(SAMPLE_TARGET.read_text())
    doc["root"] = str((SAMPLE_TARGET.parent / doc["root"]).resolve())
    doc["pairs"] = doc["pairs"][::-1]
    reversed_path = tmp_path / "reversed.json"
    reversed_path.write_text(json.dumps(doc))
    chosen = []
    for name, target in (("forward", SAMPLE_TARGET), ("reversed", reversed_path)):
        out = str(tmp_path / f"{name}.zarr")
        params = BuildParams(**{**SAMPLE_PARAMS, "k": 40}, select="match")
        build(target=manifest.load(str(target)), aux=manifest.load(str(SAMPLE_AUX)), out=out, params=params,
              engine=engine)
        group, record = open_corpus(out)
        chosen.append({(record.sources[s].id, int(y), int(x))
                       for s, (y, x) in zip(group["source"][...], group["origin"][...])})
    assert len(chosen[0]) == 40 and chosen[0] == chosen[1]
