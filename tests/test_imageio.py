import numpy as np
import pytest
from PIL import Image

from crossfuse import manifest
from crossfuse.errors import PairError
from crossfuse.imageio import read_pair


def _dataset(tmp_path, vis: Image.Image, ir: Image.Image, vis_name="a.png", ir_name="a.png"):
    for d in ("ir", "vis"):
        (tmp_path / d).mkdir(exist_ok=True)
    vis.save(tmp_path / "vis" / vis_name)
    ir.save(tmp_path / "ir" / ir_name)
    m = manifest.load(str(tmp_path))
    return m, m.pairs[0]


def test_gray_visible_becomes_equal_rgb_and_rgb_infrared_becomes_one_channel(tmp_path, sample_aux):
    m3fd = sample_aux.pairs[0]  # M3FD stores its infrared as 24-bit RGB grey
    rgb_ir = Image.open(sample_aux.url(m3fd.ir))
    assert rgb_ir.mode == "RGB"
    gray_vis = Image.open(sample_aux.url(m3fd.vis)).convert("L")
    m, pair = _dataset(tmp_path, gray_vis, rgb_ir)
    loaded = read_pair(m, pair)
    assert loaded.vis.shape == (384, 512, 3) and loaded.ir.shape == (384, 512)
    assert np.array_equal(loaded.vis[..., 0], loaded.vis[..., 2]) and np.array_equal(loaded.vis[..., 1], np.asarray(gray_vis))
    assert np.array_equal(loaded.ir, np.asarray(rgb_ir)[..., 0])  # R = G = B, so luma is the grey value


def test_sixteen_bit_is_refused_with_advice(tmp_path):
    ir16 = Image.fromarray(np.full((80, 90), 4000, dtype=np.uint16))
    m, pair = _dataset(tmp_path, Image.new("RGB", (90, 80)), ir16)
    with pytest.raises(PairError, match="8-bit images only") as info:
        read_pair(m, pair)
    assert info.value.path.endswith("ir/a.png")


def test_truncated_file_is_named(tmp_path, sample_aux):
    src = sample_aux.pairs[5]
    m, pair = _dataset(tmp_path, Image.open(sample_aux.url(src.vis)), Image.open(sample_aux.url(src.ir)))
    data = (tmp_path / "vis" / "a.png").read_bytes()
    (tmp_path / "vis" / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(PairError, match=r"vis/a.png is unreadable or truncated"):
        read_pair(m, pair)


def test_a_file_that_is_not_an_image_is_named_not_its_buffer(tmp_path):
    m, pair = _dataset(tmp_path, Image.new("RGB", (90, 80)), Image.new("L", (90, 80)))
    (tmp_path / "ir" / "a.png").write_bytes(b"this is a text file, not a PNG")
    with pytest.raises(PairError, match=r"ir/a.png is not an image file Pillow can read") as info:
        read_pair(m, pair)
    assert "BytesIO" not in str(info.value) and "skip-bad" not in str(info.value)  # commands add their own hint


def test_size_mismatch_and_missing_partner(tmp_path):
    m, pair = _dataset(tmp_path, Image.new("RGB", (90, 80)), Image.new("L", (91, 80)))
    with pytest.raises(PairError, match="90x80 but infrared .* is 91x80"):
        read_pair(m, pair)
    (tmp_path / "ir" / "a.png").unlink()
    m = manifest.load(str(tmp_path))
    with pytest.raises(PairError, match="no infrared partner"):
        read_pair(m, m.pairs[0])


def test_sha256_mismatch(sample_aux):
    p = sample_aux.pairs[0]
    wrong = manifest.Manifest(name="x", root=sample_aux.root, origin="test", pairs=(
        manifest.Pair(id=p.id, ir=p.ir, vis=p.vis, ir_sha256=p.ir_sha256, vis_sha256="0" * 64),))
    with pytest.raises(PairError, match="the manifest test says 0000"):
        read_pair(wrong, wrong.pairs[0])
    assert read_pair(sample_aux, p).vis_sha256 == p.vis_sha256


def test_pair_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(PairError("boom", pair_id="a", path="/x")))
    assert (str(err), err.pair_id, err.path) == ("boom", "a", "/x")
