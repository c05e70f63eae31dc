"""Every model trains, fuses (whole, tiled, gray, colour) and scores on the bundled sample, through
the commands users run; checkpoints record their model; bad input gets one clear line."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from crossfuse import models
from crossfuse.cli.main import main
from crossfuse.errors import CheckpointError, ConfigError
from crossfuse.fusion import checkpoint
from crossfuse.fusion.config import from_dict

OTHERS = ["seafusion", "sdnet", "densefuse"]
SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "data_manifests", "sample-target.json")


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sample_corpus):
    """One brief run per model on the sample corpus: {model: checkpoint path}."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name in OTHERS:
        run = str(root / name)
        _run("train", "--model", name, "--data", sample_corpus[0], "--out", run, "--epochs", "2",
             "--steps-per-epoch", "2", "-b", "2", "-q")
        out[name] = os.path.join(run, "checkpoints", "latest.pth")
    return out


@pytest.mark.parametrize("name", OTHERS)
def test_trains_fuses_and_scores_on_the_sample(name, trained, tmp_path):
    ckpt = trained[name]
    loaded = checkpoint.load(ckpt)
    assert loaded.model.name == name and isinstance(loaded.net, torch.nn.Module)
    payload = torch.load(ckpt, weights_only=True)
    assert payload["model"] == name and payload["crossfuse"]["config"]["model"] == name
    log = [line for line in open(os.path.join(os.path.dirname(os.path.dirname(ckpt)), "log.jsonl"))]
    assert len(log) == 4
    colour, gray, tiled = (str(tmp_path / d) for d in ("colour", "gray", "tiled"))
    _run("fuse", "--checkpoint", ckpt, "--pairs", SAMPLE, "--out", colour, "-q")
    _run("fuse", "--checkpoint", ckpt, "--pairs", SAMPLE, "--out", gray, "--gray", "-q")
    _run("fuse", "--checkpoint", ckpt, "--pairs", SAMPLE, "--out", tiled, "--tile", "200", "--overlap", "32", "-q")
    first = sorted(p for p in os.listdir(colour) if p.endswith(".png"))[0]
    c, g, t = (np.asarray(Image.open(os.path.join(d, first))) for d in (colour, gray, tiled))
    assert c.ndim == 3 and g.ndim == 2 and c.shape[:2] == g.shape
    from crossfuse import manifest, ycrcb
    from crossfuse.imageio import read_pair

    dataset = manifest.load(SAMPLE)
    pair = next(p for p in dataset.pairs if f"{p.id}.png" == first)
    src = read_pair(dataset, pair)
    raw = loaded.model.fuse_y(loaded.net, vis_y=ycrcb.rgb_to_ycrcb(src.vis)[..., 0].astype(np.float32) / 255,
                              ir=src.ir.astype(np.float32) / 255, device=torch.device("cpu"))
    if name != "seafusion":  # SeAFusion's gray output is its own Y (float), not OpenCV's
        assert np.abs(g.astype(int) - loaded.model.to_uint8(raw).astype(int)).max() <= 1
    if name != "densefuse":  # its convolutions are local: tiles with enough overlap give the same pixels
        assert np.abs(c.astype(int) - t.astype(int)).max() <= 2
    else:
        assert np.array_equal(c, t)
    out = _run("eval", "--fused", colour, "--pairs", SAMPLE, "--csv", str(tmp_path / "m.csv"), "-j", "1", "-q")
    assert "mean" in out and os.path.exists(tmp_path / "m.csv")


def test_a_checkpoint_of_another_model_is_refused_naming_both(trained, tmp_path):
    result = CliRunner().invoke(main, ["fuse", "--checkpoint", trained["sdnet"], "--model", "seafusion", "--pairs",
                                       SAMPLE, "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert "model 'sdnet', not 'seafusion'" in result.output and len(result.output.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "x")


def test_official_state_dicts_load_with_model_and_a_bare_one_needs_it(tmp_path):
    for name in OTHERS:
        model = models.get(name)
        net = model.build(model.settings())
        path = str(tmp_path / f"{name}.pth")
        torch.save(model.official_state(net), path)
        with pytest.raises(CheckpointError, match="pass --model NAME"):
            checkpoint.load(path)
        loaded = checkpoint.load(path, name)
        assert all(torch.equal(a, b) for a, b in zip(loaded.net.state_dict().values(), net.state_dict().values()))
        _run("fuse", "--checkpoint", path, "--model", name, "--pairs", SAMPLE, "--out", str(tmp_path / name), "-q")
    bad = models.get("seafusion").official_state(models.get("seafusion").build(models.get("seafusion").settings()))
    bad["decode1.conv.weight"] = torch.zeros(1, 3, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    result = CliRunner().invoke(main, ["fuse", "--checkpoint", str(tmp_path / "bad.pth"), "--model", "seafusion",
                                       "--pairs", SAMPLE, "--out", str(tmp_path / "y")])
    assert "decode1.conv.weight has shape (1, 3, 3, 3)" in result.output and result.exit_code != 0


def test_densefuse_strategy_is_chosen_at_fuse_time(trained, tmp_path):
    a, b = str(tmp_path / "add"), str(tmp_path / "l1")
    _run("fuse", "--checkpoint", trained["densefuse"], "--pairs", SAMPLE, "--out", a, "--gray", "-q")
    _run("fuse", "--checkpoint", trained["densefuse"], "--pairs", SAMPLE, "--out", b, "--gray", "-q",
         "--strategy", "l1-norm")
    first = sorted(p for p in os.listdir(a) if p.endswith(".png"))[0]
    assert not np.array_equal(np.asarray(Image.open(os.path.join(a, first))), np.asarray(Image.open(os.path.join(b, first))))
    result = CliRunner().invoke(main, ["fuse", "--checkpoint", trained["sdnet"], "--strategy", "l1-norm", "--pairs",
                                       SAMPLE, "--out", str(tmp_path / "z")])
    assert result.exit_code != 0 and "strategy" in result.output


def test_unknown_model_and_settings_of_another_model_are_named():
    result = CliRunner().invoke(main, ["train", "--model", "unet", "--data", "x.zarr", "--out", "r"])
    assert result.exit_code != 0 and "unknown model 'unet'" in result.output and "seafusion" in result.output
    with pytest.raises(ConfigError, match=r"'dim' \(of crossfuse\)"):
        from_dict({"model": "seafusion", "network": {"dim": 16}})
    with pytest.raises(ConfigError, match="did you mean 'grad_weight'"):
        from_dict({"model": "seafusion", "network": {"grad_wieght": 5}})
    cfg = from_dict({"model": "sdnet", "epochs": 3})
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.phase1_epochs, cfg.clip_norm) == (3, 32, 1e-4, 0, 0.0)
    assert from_dict({}).model == "crossfuse" and from_dict({}).network.dim == 64


def test_experiment_spec_crosses_variants_with_models(tmp_path):
    from crossfuse.experiment import spec as spec_mod

    (tmp_path / "s.toml").write_text(f'''
models = ["crossfuse", "seafusion"]
seeds = [0]
[train]
epochs = 1
phase1_epochs = 0
steps_per_epoch = 2
[network.crossfuse]
dim = 16
heads = 2
[training.crossfuse]
lr = 5e-4
[corpora.t]
pack = "{os.path.abspath(SAMPLE)}"
[variants.a]
corpora = ["t"]
[variants.b]
corpora = ["t"]
train = {{ lr = 1e-3 }}
[tests.s]
pairs = "{os.path.abspath(SAMPLE)}"
''')
    s = spec_mod.load(str(tmp_path / "s.toml"))
    assert list(s.variants) == ["a.crossfuse", "b.crossfuse", "a.seafusion", "b.seafusion"]
    assert s.variants["b.seafusion"].config.lr == 1e-3 and s.variants["a.seafusion"].config.batch_size == 16
    assert s.variants["a.crossfuse"].config.lr == 5e-4 and s.variants["a.seafusion"].config.lr == 0.001 / 0.75
    assert s.variants["a.crossfuse"].config.network.dim == 16
    assert s.baseline_for("b.seafusion") == "a.seafusion" and s.baseline_for("b.crossfuse") == "a.crossfuse"


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_ddp_two_cpu_processes_train_every_model(name, tmp_path, sample_corpus):
    from tests.helpers import run_torchrun

    run = tmp_path / "ddp"
    run_torchrun(["-m", "crossfuse.cli.main", "train", "--model", name, "--data", sample_corpus[0], "--out", str(run),
                  "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "4", "-q"])
    assert len(open(run / "log.jsonl").readlines()) == 3
    assert checkpoint.load(str(run / "checkpoints" / "latest.pth")).model.name == name


@pytest.mark.parametrize("name", OTHERS)
def test_bf16_training_steps_are_finite(name, tmp_path, sample_corpus):
    from crossfuse.fusion import trainer

    cfg = from_dict({"model": name, "epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "bf16": True})
    result = trainer.train(data=[sample_corpus[0]], out=str(tmp_path / "bf16"), cfg=cfg)
    assert result.steps == 2 and np.isfinite(result.final_loss)


@pytest.mark.parametrize("name", OTHERS)
def test_corpus_api_example_trains_each_model(name, sample_corpus):
    import subprocess
    import sys

    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "train_other_model.py")
    r = subprocess.run([sys.executable, example, sample_corpus[0], "--steps", "2", "--batch-size", "4", "--model",
                        name], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    steps = [line for line in r.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == 2 and all(np.isfinite(float(line.split()[-1])) for line in steps)


@pytest.mark.parametrize("name", ["crossfuse", "seafusion"])
def test_runs_of_different_variants_at_one_seed_start_from_the_same_weights(name, tmp_path, sample_corpus):
    """What makes pairing by seed valid: the initial weights depend on the model, its settings and
    the seed alone, not on the corpora a variant trains on."""
    from crossfuse.fusion.trainer import Trainer

    net = {"network": {"dim": 8, "heads": 2, "encoder_blocks": 1, "decoder_blocks": 1, "detail_nodes": 1}} \
        if name == "crossfuse" else {}
    starts = []
    for i, (data, weights, seed) in enumerate(((([sample_corpus[0]]), None, 3),
                                               ([sample_corpus[0], sample_corpus[0]], [1.0, 0.5], 3),
                                               ([sample_corpus[0]], None, 4))):
        cfg = from_dict({"model": name, "seed": seed, "epochs": 1, "phase1_epochs": 0, **net})
        trainer = Trainer.setup(data=data, out=str(tmp_path / f"r{i}"), cfg=cfg, weights=weights)
        starts.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        trainer.close()
    same = all(torch.equal(starts[0][k], starts[1][k]) for k in starts[0])
    other_seed = all(torch.equal(starts[0][k], starts[2][k]) for k in starts[0])
    assert same and not other_seed


def test_fuse_takes_a_run_folder_and_refuses_other_folders(trained, tmp_path, sample_corpus):
    run = os.path.dirname(os.path.dirname(trained["sdnet"]))
    out = _run("fuse", "--checkpoint", run, "--pairs", SAMPLE, "--out", str(tmp_path / "f"), "-q")
    assert "wrote" in out and len(list((tmp_path / "f").glob("*.png"))) > 0
    r = CliRunner().invoke(main, ["fuse", "--checkpoint", sample_corpus[0], "--pairs", SAMPLE, "--out",
                                  str(tmp_path / "g")])
    assert r.exit_code == 1 and "is a folder, not a checkpoint" in r.output and "Traceback" not in r.output
