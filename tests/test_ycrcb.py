"""OpenCV's 8-bit YCrCb arithmetic in numpy, against OpenCV itself (opencv-python-headless, a
test-only extra) and against the official test script's own values."""

from __future__ import annotations

import numpy as np
import pytest

from crossfuse import manifest, ycrcb
from crossfuse.imageio import read_pair
from tests.helpers import DATASETS, MANIFESTS, REFERENCE, SAMPLE_AUX, SAMPLE_TARGET, needs_reference


def _every_triple() -> np.ndarray:
    """All 2^24 uint8 triples as a 4096 x 4096 image."""
    v = np.arange(256, dtype=np.uint8)
    return np.stack(np.meshgrid(v, v, v, indexing="ij"), axis=-1).reshape(4096, 4096, 3)


def test_both_directions_equal_opencv_on_every_possible_pixel():
    cv2 = pytest.importorskip("cv2")
    every = _every_triple()
    assert np.array_equal(ycrcb.rgb_to_ycrcb(every), cv2.cvtColor(every, cv2.COLOR_RGB2YCrCb))
    assert np.array_equal(ycrcb.rgb_to_ycrcb(every), cv2.cvtColor(every[..., ::-1].copy(), cv2.COLOR_BGR2YCrCb))
    assert np.array_equal(ycrcb.ycrcb_to_rgb(every), cv2.cvtColor(every, cv2.COLOR_YCrCb2RGB))


def _manifests() -> list[str]:
    found = [str(SAMPLE_TARGET), str(SAMPLE_AUX)]
    if DATASETS.is_dir():
        found += [str(MANIFESTS / f"{name}.json") for name in ("roadscene", "msrs", "m3fd", "tno", "vifb")]
    return found


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.rsplit("/", 1)[-1])
def test_every_real_image_converts_as_opencv_reads_and_converts_it(path):
    """Every visible image of the sample (and of ../shared/datasets when present): our decode and
    conversion give what ``cv2.imread`` + ``BGR2YCrCb`` give, and back through ``YCrCb2RGB``."""
    cv2 = pytest.importorskip("cv2")
    m = manifest.load(path)
    for pair in m.pairs:
        ours = read_pair(m, pair)
        theirs = cv2.cvtColor(cv2.imread(m.url(pair.vis), cv2.IMREAD_COLOR), cv2.COLOR_BGR2YCrCb)
        assert np.array_equal(ycrcb.rgb_to_ycrcb(ours.vis), theirs), pair.id
        assert np.array_equal(ycrcb.ycrcb_to_rgb(theirs), cv2.cvtColor(theirs, cv2.COLOR_YCrCb2RGB)), pair.id
        assert np.array_equal(ours.ir, cv2.imread(m.url(pair.ir), cv2.IMREAD_GRAYSCALE)), pair.id


@needs_reference
def test_the_official_scripts_y_cr_cb_and_saved_colour():
    ref = np.load(REFERENCE / "official_pipeline_seed0.npz")
    for tag in ("roadscene", "msrs"):
        got = ycrcb.rgb_to_ycrcb(ref[f"{tag}_vis_rgb"])
        for i, ch in enumerate(("y", "cr", "cb")):
            assert np.array_equal(got[..., i], ref[f"{tag}_{ch}"]), (tag, ch)
        back = ycrcb.ycrcb_to_rgb(np.dstack([ref[f"{tag}_fused_u8"], ref[f"{tag}_cr"], ref[f"{tag}_cb"]]))
        assert np.array_equal(back, ref[f"{tag}_fused_rgb"]), tag


def test_gray_round_trips_and_rounding_where_pillow_truncates():
    gray = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    yc = ycrcb.rgb_to_ycrcb(gray)
    assert np.array_equal(yc[..., 0], gray[..., 0]) and (yc[..., 1:] == 128).all()
    assert np.array_equal(ycrcb.ycrcb_to_rgb(yc), gray)
    # 0.299 + 0.587 = 0.886: OpenCV rounds to 1 where Pillow's YCbCr truncates to 0
    assert ycrcb.luma(np.array([[[1, 1, 0]]], dtype=np.uint8)).item() == 1
    with pytest.raises(ValueError, match="uint8"):
        ycrcb.rgb_to_ycrcb(np.zeros((2, 2, 3), dtype=np.float32))
