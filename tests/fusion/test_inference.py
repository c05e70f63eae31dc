"""Fusing real sample pairs: colour and gray output, tiling, official and our checkpoints."""

import numpy as np
import pytest
import torch
from PIL import Image

from crossfuse import manifest
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
    out = fuse_images(model, pair.vis, pair.ir, device=CPU)
    assert out.mode == "RGB" and out.size == (pair.ir.shape[1], pair.ir.shape[0])
    ours = np.asarray(out.convert("YCbCr")).astype(int)
    vis = np.asarray(Image.fromarray(pair.vis).convert("YCbCr")).astype(int)
    assert np.abs(ours[..., 1:] - vis[..., 1:]).mean() < 1.5  # chroma survives the RGB round trip
    assert ours[..., 0].max() - ours[..., 0].min() > 230  # the fused Y spans the range (RGB clipping aside)


def test_gray_output_is_the_normalised_network_output(model, pair):
    out = fuse_images(model, pair.vis, pair.ir, device=CPU, options=FuseOptions(gray=True))
    y = np.asarray(Image.fromarray(pair.vis).convert("YCbCr"))[..., 0]
    raw = fuse_y(model, y, pair.ir, device=CPU)
    assert out.mode == "L" and np.array_equal(np.asarray(out), to_uint8(raw))
    assert np.asarray(out).min() == 0 and np.asarray(out).max() == 255


def test_gray_visible_gives_gray_output(model, pair):
    gray = np.repeat(np.asarray(Image.fromarray(pair.vis).convert("L"))[..., None], 3, axis=2)
    assert fuse_images(model, gray, pair.ir, device=CPU).mode == "L"


def test_channels_last_gives_the_same_numbers(model, pair):
    y = np.asarray(Image.fromarray(pair.vis).convert("YCbCr"))[..., 0]
    nchw = fuse_y(model, y, pair.ir, device=CPU, options=FuseOptions(channels_last=False))
    nhwc = fuse_y(model, y, pair.ir, device=CPU, options=FuseOptions(channels_last=True))
    assert np.abs(nchw - nhwc).max() < 1e-5
    assert next(model.parameters()).dim() == 4 and model.encoder.patch_embed.proj.weight.is_contiguous(
        memory_format=torch.channels_last)


def test_rounding_not_truncation():
    assert to_uint8(np.array([0.0, 0.5, 1.0], dtype=np.float32)).tolist() == [0, 128, 255]
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
    y = np.asarray(Image.fromarray(pair.vis).convert("YCbCr"))[..., 0]
    whole = fuse_y(model, y, pair.ir, device=CPU)
    assert np.array_equal(whole, fuse_y(model, y, pair.ir, device=CPU, options=FuseOptions(tile=4096)))
    tiled = fuse_y(model, y, pair.ir, device=CPU, options=FuseOptions(tile=160, overlap=32))
    assert np.abs(tiled - whole).mean() < 0.02


def test_our_checkpoint_roundtrip(tmp_path, model):
    path = str(tmp_path / "c.pth")
    checkpoint.save(path, model, {"config": TrainConfig(network=TINY).to_dict()})
    loaded = checkpoint.load_model(path)
    assert loaded.config == TINY
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable"):
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
    r = CliRunner().invoke(main, ["fuse", "-k", str(REFERENCE / "official_net_seed0.pth"), "-p", str(folder),
                                  "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "out" / "x.png").size == (96, 80)
    assert manifest.load(str(folder)).pairs[0].id == "x"
