"""Fusing real sample pairs: colour and gray output, tiling, official and our checkpoints, and the
official test script's output reproduced pixel for pixel."""

import numpy as np
import pytest
import torch
from PIL import Image

from crossfuse import manifest, ycrcb
from crossfuse.fusion import checkpoint
from crossfuse.fusion.config import TrainConfig
from crossfuse.fusion.inference import FuseOptions, _tiles, fuse_images, fuse_y, to_uint8
from crossfuse.fusion.network import CrossFuse, NetworkConfig
from crossfuse.imageio import read_pair
from tests.helpers import REFERENCE, needs_reference

TINY = NetworkConfig(dim=8, heads=2, encoder_blocks=1, decoder_blocks=1, detail_nodes=1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CrossFuse(TINY).eval()


@pytest.fixture(scope="module")
def pair(sample_target):
    return read_pair(sample_target, sample_target.pairs[0])


def test_colour_output_keeps_visible_chroma(model, pair):
    out = fuse_images(model, vis_rgb=pair.vis, ir=pair.ir, device=CPU)
    assert out.mode == "RGB" and out.size == (pair.ir.shape[1], pair.ir.shape[0])
    ours = ycrcb.rgb_to_ycrcb(np.asarray(out)).astype(int)
    vis = ycrcb.rgb_to_ycrcb(pair.vis).astype(int)
    assert np.abs(ours[..., 1:] - vis[..., 1:]).mean() < 1.5  # chroma survives the RGB round trip
    assert ours[..., 0].max() - ours[..., 0].min() > 230  # the fused Y spans the range (RGB clipping aside)


def test_gray_output_is_the_normalised_network_output(model, pair):
    out = fuse_images(model, vis_rgb=pair.vis, ir=pair.ir, device=CPU, options=FuseOptions(gray=True))
    y = ycrcb.luma(pair.vis)
    raw = fuse_y(model, vis_y=y, ir=pair.ir, device=CPU)
    assert out.mode == "L" and np.array_equal(np.asarray(out), to_uint8(raw))
    assert np.asarray(out).min() == 0 and np.asarray(out).max() == 255


def test_gray_visible_gives_gray_output(model, pair):
    gray = np.repeat(np.asarray(Image.fromarray(pair.vis).convert("L"))[..., None], 3, axis=2)
    assert fuse_images(model, vis_rgb=gray, ir=pair.ir, device=CPU).mode == "L"


def test_channels_last_gives_the_same_numbers(model, pair):
    y = ycrcb.luma(pair.vis)
    nchw = fuse_y(model, vis_y=y, ir=pair.ir, device=CPU, options=FuseOptions(channels_last=False))
    nhwc = fuse_y(model, vis_y=y, ir=pair.ir, device=CPU, options=FuseOptions(channels_last=True))
    assert np.abs(nchw - nhwc).max() < 1e-5
    assert next(model.parameters()).dim() == 4 and model.encoder.patch_embed.proj.weight.is_contiguous(
        memory_format=torch.channels_last)


def test_truncation_by_default_rounding_on_request():
    f = np.array([0.0, 0.5, 1.0, 0.9], dtype=np.float32)
    assert to_uint8(f).tolist() == [0, 127, 255, 229]  # 127.5 and 229.5 truncated, as the release does
    assert to_uint8(f, round=True).tolist() == [0, 128, 255, 230]
    assert to_uint8(np.full(3, 0.4, dtype=np.float32)).tolist() == [0, 0, 0]


@pytest.mark.parametrize("length,tile,overlap", [(329, 128, 16), (500, 200, 32), (64, 128, 16), (257, 100, 10)])
def test_tiles_cover_every_pixel_once(length, tile, overlap):
    covered = np.zeros(length, int)
    for start, stop, keep, keep_stop in _tiles(length, tile, overlap):
        assert 0 <= start <= keep < keep_stop <= stop <= length
        assert stop - start <= tile or tile >= length
        covered[keep:keep_stop] += 1
    assert (covered == 1).all()


def test_tiled_fusion_is_close_and_whole_tile_is_exact(model, pair):
    y = ycrcb.luma(pair.vis)
    whole = fuse_y(model, vis_y=y, ir=pair.ir, device=CPU)
    assert np.array_equal(whole, fuse_y(model, vis_y=y, ir=pair.ir, device=CPU, options=FuseOptions(tile=4096)))
    tiled = fuse_y(model, vis_y=y, ir=pair.ir, device=CPU, options=FuseOptions(tile=160, overlap=32))
    assert np.abs(tiled - whole).mean() < 0.02


def test_our_checkpoint_roundtrip(tmp_path, model):
    path = str(tmp_path / "c.pth")
    opt = torch.optim.Adam(model.parameters())
    state = checkpoint.TrainingState(epoch=0, step=0, optimizer=opt.state_dict(), scheduler={}, rng={},
                                     config=TrainConfig(network=TINY))
    checkpoint.save(path, model, state)
    loaded = checkpoint.load_model(path)
    assert loaded.config == TINY
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="is not a PyTorch checkpoint"):
        checkpoint.load_model(str(tmp_path / "bad.pth"))


@needs_reference
def test_official_checkpoint_fuses_a_sample_pair(tmp_path, sample_target):
    from click.testing import CliRunner

    from crossfuse.cli.main import main

    folder = tmp_path / "pairs"
    for side in ("ir", "vis"):
        (folder / side).mkdir(parents=True)
        src = Image.open(sample_target.url(getattr(sample_target.pairs[1], side)))
        src.crop((0, 0, 96, 80)).save(folder / side / "x.png")
    r = CliRunner().invoke(main, ["fuse", "--checkpoint", str(REFERENCE / "official_net_seed0.pth"), "--pairs", str(folder),
                                  "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "out" / "x.png").size == (96, 80)
    assert manifest.load(str(folder)).pairs[0].id == "x"


# ---- the official test script, end to end (../shared/reference/official_pipeline_seed0.npz) ----

def _near_truncation_boundary(raw: np.ndarray, atol: float = 1e-3) -> np.ndarray:
    """Pixels whose release value (min-max of ``raw`` times 255) lies within ``atol`` of an
    integer: there float32 rounding of the network's output decides the truncation."""
    scaled = (raw - raw.min()) / (raw.max() - raw.min()) * np.float32(255)
    return np.abs(scaled - np.round(scaled)) < atol


@needs_reference
@pytest.mark.parametrize("tag", ["roadscene", "msrs"])
def test_fuse_writes_what_the_official_test_script_writes(tmp_path, tag):
    from click.testing import CliRunner

    from crossfuse.cli.main import main

    ref = np.load(REFERENCE / "official_pipeline_seed0.npz")
    assert np.array_equal(to_uint8(ref[f"{tag}_fused_raw"]), ref[f"{tag}_fused_u8"])  # the release's cast
    yc = ycrcb.rgb_to_ycrcb(ref[f"{tag}_vis_rgb"])
    for i, ch in enumerate(("y", "cr", "cb")):
        assert np.array_equal(yc[..., i], ref[f"{tag}_{ch}"]), ch
    folder = tmp_path / "pairs"
    for side, key in (("ir", "ir"), ("vis", "vis_rgb")):
        (folder / side).mkdir(parents=True)
        Image.fromarray(ref[f"{tag}_{key}"]).save(folder / side / f"{tag}.png")
    ckpt = str(REFERENCE / "official_net_seed0.pth")
    for extra, out_dir in (([], "colour"), (["--gray"], "gray")):
        r = CliRunner().invoke(main, ["fuse", "--checkpoint", ckpt, "--pairs", str(folder),
                                      "--out", str(tmp_path / out_dir), "-q", *extra])
        assert r.exit_code == 0, r.output
    gray = np.asarray(Image.open(tmp_path / "gray" / f"{tag}.png"))
    colour = np.asarray(Image.open(tmp_path / "colour" / f"{tag}.png"))
    expected_y, expected_rgb = ref[f"{tag}_fused_u8"], ref[f"{tag}_fused_rgb"]
    off = gray.astype(int) - expected_y
    assert np.abs(off).max() <= 1 and np.count_nonzero(off) <= 10
    assert _near_truncation_boundary(ref[f"{tag}_fused_raw"])[off != 0].all()
    # where the fused Y agrees the colour image is identical; elsewhere it is one level off at most
    same = off == 0
    assert np.array_equal(colour[same], expected_rgb[same])
    assert np.abs(colour.astype(int) - expected_rgb).max() <= 1
    assert np.array_equal(colour, ycrcb.ycrcb_to_rgb(np.dstack([gray, yc[..., 1], yc[..., 2]])))
