"""Untrusted input stays contained: manifests cannot reach outside their root or write outside
--out, image bombs and unreadable files are refused naming the file, checkpoints are validated
before a network is built, and bad values get one-line errors instead of tracebacks."""

import json
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from crossfuse import manifest
from crossfuse.cli.align import main as align_main
from crossfuse.cli.main import main
from crossfuse.errors import ManifestError
from tests.helpers import SAMPLE_TARGET


def _run(cli, *args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def ckpt(tmp_path):
    """A checkpoint of a tiny network (these tests need no particular weights, nor ../shared)."""
    return _tampered_checkpoint(tmp_path, lambda payload: None)


def _png_header(path, width, height):
    """A PNG that claims width x height (a decompression bomb's header) with almost no data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _dataset(tmp_path, n=3, size=(96, 64)):
    """A folder dataset of ``n`` real sample pairs cropped to ``size``."""
    target = manifest.load(str(SAMPLE_TARGET))
    root = tmp_path / "pairs"
    for side in ("ir", "vis"):
        (root / side).mkdir(parents=True, exist_ok=True)
        for pair in target.pairs[:n]:
            Image.open(target.url(getattr(pair, side))).crop((0, 0, *size)).save(root / side / f"{pair.id}.png")
    return root, [p.id for p in target.pairs[:n]]


@pytest.mark.parametrize("field,value", [("id", "../../x"), ("id", "/abs/x"), ("id", "a/../../b"),
                                         ("vis", "../../../etc/passwd"), ("ir", "/etc/passwd"),
                                         ("vis", "s3://bucket/x.png"), ("id", "C:/x")])
def test_manifests_cannot_reach_outside_their_root(tmp_path, field, value):
    item = {"id": "ok", "ir": "ir/a.png", "vis": "vis/a.png", field: value}
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"name": "evil", "root": ".", "pairs": [item]}))
    with pytest.raises(ManifestError, match="not a plain name" if field == "id" else "leaves the dataset root"):
        manifest.load(str(path))


def test_fuse_never_writes_outside_out(tmp_path, ckpt):
    root, ids = _dataset(tmp_path, n=1)
    m = {"name": "evil", "root": str(root), "pairs": [{"id": "../escaped", "ir": f"ir/{ids[0]}.png",
                                                       "vis": f"vis/{ids[0]}.png"}]}
    (tmp_path / "m.json").write_text(json.dumps(m))
    r = _run(main, "fuse", "--checkpoint", ckpt, "--pairs", tmp_path / "m.json",
             "-o", tmp_path / "out", "-q")
    assert r.exit_code == 1 and "not a plain name" in r.output and not (tmp_path / "escaped.png").exists()


@pytest.mark.parametrize("width,height", [(12000, 12000), (100000, 100000)])
def test_image_bombs_are_refused_naming_the_file_and_skipped_with_skip_bad(tmp_path, ckpt, width, height):
    root, ids = _dataset(tmp_path)
    _png_header(root / "vis" / f"{ids[1]}.png", width, height)
    r = _run(align_main, "pack", "-m", root, "-o", tmp_path / "p.zarr", "-s", "32", "-q")
    assert r.exit_code == 1 and f"{ids[1]}.png" in r.output and "Traceback" not in r.output
    assert ("above the limit" in r.output) if width == 12000 else ("too large to decode safely" in r.output)
    r = _run(align_main, "pack", "-m", root, "-o", tmp_path / "q.zarr", "-s", "32", "-q", "--skip-bad")
    assert r.exit_code == 0 and "skipped 1 bad pair(s)" in r.output
    r = _run(main, "fuse", "--checkpoint", ckpt, "--pairs", root, "-o",
             tmp_path / "f", "--skip-bad", "-q")
    assert r.exit_code == 0 and "wrote 2 fused image(s)" in r.output and f"{ids[1]}: " in r.output


def test_the_pixel_limit_is_configurable(tmp_path, monkeypatch):
    root, ids = _dataset(tmp_path, n=1)
    monkeypatch.setenv("CROSSFUSE_MAX_PIXELS", "1000")  # 96 x 64 = 6144 pixels
    r = _run(align_main, "pack", "-m", root, "-o", tmp_path / "p.zarr", "-s", "32", "-q")
    assert r.exit_code == 1 and "above the limit of 0 million" in r.output and "CROSSFUSE_MAX_PIXELS" in r.output


@pytest.mark.parametrize("damage", ["garbage", "empty", "16-bit", "bomb"])
def test_eval_names_a_fused_image_it_cannot_score(tmp_path, damage):
    root, ids = _dataset(tmp_path, n=1)
    fused = tmp_path / "fused"
    fused.mkdir()
    path = fused / f"{ids[0]}.png"
    if damage == "garbage":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "16-bit":
        Image.fromarray(np.full((64, 96), 40000, dtype=np.uint16)).save(path)
    else:
        _png_header(path, 12000, 12000)
    r = _run(main, "eval", "-f", fused, "--pairs", root, "-j", "1", "-q")
    assert r.exit_code == 1 and str(path) in r.output and "Traceback" not in r.output, r.output
    if damage == "16-bit":
        assert "8-bit" in r.output


def _tampered_checkpoint(tmp_path, change):
    from crossfuse.fusion import checkpoint
    from crossfuse.fusion.config import TrainConfig
    from crossfuse.fusion.network import CrossFuse, NetworkConfig

    tiny = NetworkConfig(dim=8, heads=2, encoder_blocks=1, decoder_blocks=1, detail_nodes=1)
    model = CrossFuse(tiny)
    opt = torch.optim.Adam(model.parameters())
    state = checkpoint.TrainingState(epoch=0, step=0, optimizer=opt.state_dict(), scheduler={}, rng={},
                                     config=TrainConfig(network=tiny))
    path = tmp_path / f"c{len(list(tmp_path.glob('c*.pth')))}.pth"
    checkpoint.save(str(path), model, state)
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("change,message", [
    (lambda p: p["crossfuse"]["config"]["network"].update(dim=200000), "dim must lie in 2..1024"),
    (lambda p: p["crossfuse"]["config"]["network"].update(heads="x"), "heads must be an integer"),
    (lambda p: p["crossfuse"].update(config=[1, 2]), "not a crossfuse training state"),
    (lambda p: next(iter(p["DIDF_Decoder"].values())).fill_(float("nan")), "NaN or infinite weights"),
    (lambda p: p.update(DIDF_Encoder=[1]), "not a CrossFuse checkpoint"),
])
def test_a_malformed_checkpoint_is_refused_before_a_network_is_built(tmp_path, change, message):
    path = _tampered_checkpoint(tmp_path, change)
    root, _ = _dataset(tmp_path, n=1)
    r = _run(main, "fuse", "--checkpoint", path, "--pairs", root, "-o", tmp_path / "f", "-q")
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "f").exists() or not list((tmp_path / "f").glob("*.png"))


def test_one_line_errors_instead_of_tracebacks(tmp_path, sample_corpus, monkeypatch, ckpt):
    junk = tmp_path / "junk.zarr"
    junk.mkdir()
    (junk / "zarr.json").write_text("{not json")
    for cli, args, message in [
        (align_main, ["inspect", junk], "metadata is damaged"),
        (main, ["train", "-d", junk, "-o", tmp_path / "r"], "metadata is damaged"),
        (align_main, ["pack", "-m", SAMPLE_TARGET, "-o", junk, "-q"], "damaged Zarr metadata"),
        (main, ["train", "-d", sample_corpus[0], "-o", tmp_path / "r", "--lr", "nan"], "lr must be a finite number"),
        (main, ["train", "-d", sample_corpus[0], "-o", tmp_path / "r", "--lr", "-1"], "lr must be a finite number"),
    ]:
        r = _run(cli, *args)
        assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, (args, r.output)
    (tmp_path / "afile").write_text("x")
    r = _run(main, "fuse", "--checkpoint", ckpt, "--pairs", SAMPLE_TARGET,
             "-o", tmp_path / "afile", "-q")
    assert r.exit_code == 1 and "is a file" in r.output
    assert (tmp_path / "afile").read_text() == "x"

    def read_only(path, *args, **kwargs):  # the tests run as root, so a chmod would not stop them
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "makedirs", read_only)
    r = _run(main, "fuse", "--checkpoint", ckpt, "--pairs", SAMPLE_TARGET,
             "-o", tmp_path / "ro" / "out", "-q")
    assert r.exit_code == 1 and "permission denied" in r.output and "ro/out" in r.output


def test_an_existing_empty_output_folder_keeps_its_mode(tmp_path, sample_target, engine):
    from crossfuse.align import BuildParams, pack

    out = tmp_path / "mine.zarr"
    out.mkdir()
    os.chmod(out, 0o2750)
    pack(dataset=sample_target, out=str(out), params=BuildParams(patch=64, stride=200, chunk=16), engine=engine)
    assert oct(os.stat(out).st_mode & 0o7777) == oct(0o2750)
    shutil.rmtree(out)
