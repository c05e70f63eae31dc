"""--drop-low-contrast leaves out exactly the patches CDDFuse's data preparation drops, on the
bundled sample's real patches (about 1 in 18 of the auxiliary set), and says so in the record."""

import numpy as np
import zarr
from click.testing import CliRunner

from crossfuse import manifest
from crossfuse.align import patches as P
from crossfuse.cli.align import main as align_main
from crossfuse.imageio import read_pair
from crossfuse.schema import open_corpus
from tests.helpers import SAMPLE_AUX, SAMPLE_TARGET, source_patches


def their_is_low_contrast(image, fraction_threshold=0.1, lower_percentile=10, upper_percentile=90):
    """skimage's / CDDFuse's test, restated: the p10-p90 spread relative to p90."""
    limits = np.percentile(image, [lower_percentile, upper_percentile])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (limits[1] - limits[0]) / limits[1]
    return ratio < fraction_threshold


def _their_decision(vis_rgb_patch, ir_patch):
    """Their preparation of one patch: float32 / 255., rgb2y for the visible, then the test on each."""
    v = vis_rgb_patch.astype(np.float32) / 255.
    y = v[0:1] * 0.299000 + v[1:2] * 0.587000 + v[2:3] * 0.114000
    i = ir_patch.astype(np.float32) / 255.
    return bool(their_is_low_contrast(i[0]) or their_is_low_contrast(y[0]))


def _patches(spec, patch=64, stride=64):
    data = manifest.load(str(spec))
    for pair in data.pairs:
        loaded = read_pair(data, pair)
        origins = P.grid(*loaded.ir.shape, patch, stride)
        yield P.extract(loaded.vis, origins, patch), P.extract(loaded.ir, origins, patch)


def test_the_decision_is_theirs_on_every_sample_patch():
    dropped = total = 0
    for spec in (SAMPLE_AUX, SAMPLE_TARGET):
        for vis, ir in _patches(spec):
            ours = P.low_contrast(vis, ir)
            theirs = np.array([_their_decision(v, i) for v, i in zip(vis, ir)])
            assert np.array_equal(ours, theirs)
            dropped, total = dropped + int(ours.sum()), total + len(ours)
    assert 0 < dropped < total  # the sample really has both kinds


def test_edge_cases_follow_their_arithmetic():
    black = np.zeros((1, 3, 8, 8), np.uint8)
    grey = np.full((1, 3, 8, 8), 128, np.uint8)
    busy = np.random.default_rng(0).integers(0, 256, (1, 3, 8, 8)).astype(np.uint8)
    assert not P.low_contrast(black, black[:, :1])[0]  # 0 / 0 is NaN, and NaN < 0.1 is false: kept
    assert P.low_contrast(grey, busy[:, :1])[0] and P.low_contrast(busy, grey[:, :1])[0]
    assert not P.low_contrast(busy, busy[:, :1])[0]


def test_pack_and_build_leave_them_out_and_record_it(tmp_path):
    keep = []
    for vis, ir in _patches(SAMPLE_AUX):
        keep.append(vis[~P.low_contrast(vis, ir)])
    expected = np.concatenate(keep)
    common = ["-p", "64", "-s", "64", "--chunk", "48", "-q", "--drop-low-contrast"]
    r = CliRunner().invoke(align_main, ["pack", "-m", str(SAMPLE_AUX), "-o", str(tmp_path / "p.zarr"), *common])
    assert r.exit_code == 0 and f"{752 - len(expected)} auxiliary patches left out" in r.output, r.output
    group, record = open_corpus(str(tmp_path / "p.zarr"))
    assert np.array_equal(group["vis"][...], expected)  # exactly theirs, in order
    assert record.params.drop_low_contrast is True and record.counts.low_contrast == 752 - len(expected)
    r = CliRunner().invoke(align_main, ["build", "-t", str(SAMPLE_TARGET), "-a", str(SAMPLE_AUX), "-k", "200",
                                        "-o", str(tmp_path / "b.zarr"), *common])
    assert r.exit_code == 0, r.output
    group, record = open_corpus(str(tmp_path / "b.zarr"))
    assert record.counts.aux_patches == len(expected) and record.counts.target_patches == 244  # target kept whole
    assert not P.low_contrast(source_patches(group, record), group["ir"][...]).any()  # before gamma


def test_without_the_flag_nothing_changes(sample_corpus):
    _, record = open_corpus(sample_corpus[0])
    assert record.params.drop_low_contrast is None and record.counts.low_contrast is None
    assert "drop_low_contrast" not in zarr.open_group(sample_corpus[0], mode="r").attrs["crossfuse"]["params"]
