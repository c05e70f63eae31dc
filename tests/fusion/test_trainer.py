"""Training on a real corpus: the loss falls, a killed run resumes exactly, NaNs are handled, DDP runs."""

import json
import math
import os
import warnings

import pytest
import torch

from crossfuse.errors import ConfigError, OutputExistsError
from crossfuse.fusion import checkpoint, steps, trainer
from crossfuse.fusion.config import TrainConfig, load
from crossfuse.corpus.reading import Corpora, plan_epoch
from crossfuse.fusion.network import NetworkConfig
from tests.helpers import REPO, needs_shared, run_torchrun

TINY = NetworkConfig(dim=8, heads=2, encoder_blocks=1, decoder_blocks=1, detail_nodes=1)


def _cfg(**kw):
    base = dict(epochs=3, phase1_epochs=1, batch_size=4, steps_per_epoch=2, network=TINY, lr=1e-3, clip_norm=1.0)
    base.update(kw)
    return TrainConfig(**base)


def _log(run):
    return [json.loads(line) for line in open(os.path.join(run, "log.jsonl"))]


def test_loss_goes_down_and_run_folder_is_complete(tmp_path, sample_corpus):
    run = str(tmp_path / "run")
    cfg = _cfg(epochs=2, phase1_epochs=2, steps_per_epoch=8, lr=3e-3, batch_size=8)
    result = trainer.train(data=[sample_corpus[0]], out=run, cfg=cfg)
    losses = [r["loss"] for r in _log(run)]
    assert len(losses) == result.steps == 16
    assert sum(losses[-4:]) < 0.8 * sum(losses[:4])
    assert load(os.path.join(run, "config.toml")) == cfg
    assert os.path.getsize(os.path.join(run, "loss_phase1.png")) > 1000
    payload = torch.load(os.path.join(run, "checkpoints", "epoch_0002.pth"), weights_only=True)
    assert set(payload) == {"DIDF_Encoder", "DIDF_Decoder", "BaseFuseLayer", "DetailFuseLayer", "crossfuse"}
    assert all(k.startswith("module.") for k in payload["DIDF_Encoder"])
    with pytest.raises(OutputExistsError, match="--resume"):
        trainer.train(data=[sample_corpus[0]], out=run, cfg=cfg)


def test_killed_run_resumes_to_identical_weights(tmp_path, sample_corpus, monkeypatch):
    cfg = _cfg()
    whole = str(tmp_path / "whole")
    trainer.train(data=[sample_corpus[0]], out=whole, cfg=cfg)

    killed = str(tmp_path / "killed")
    real = steps.step_losses
    calls = {"n": 0}

    def dies_in_epoch_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # second step of the third epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(steps, "step_losses", dies_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(data=[sample_corpus[0]], out=killed, cfg=cfg)
    monkeypatch.undo()
    assert len(_log(killed)) == 5
    trainer.train(data=[sample_corpus[0]], out=killed, cfg=cfg, resume=True)
    a = checkpoint.load_model(os.path.join(whole, "checkpoints", "latest.pth"))
    b = checkpoint.load_model(os.path.join(killed, "checkpoints", "latest.pth"))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert [r["loss"] for r in _log(whole)] == [r["loss"] for r in _log(killed)]


def test_non_finite_losses_are_skipped_then_abort(tmp_path, sample_corpus, monkeypatch):
    real = steps.step_losses
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        if calls["n"] >= 2:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(steps, "step_losses", poisoned)
    with pytest.warns(UserWarning, match="non-finite loss"), pytest.raises(trainer.TrainingDiverged, match="3 consecutive .* non-finite loss .* lower lr"):
        trainer.train(data=[sample_corpus[0]], out=str(tmp_path / "nan"), cfg=_cfg(nan_patience=3))
    assert len(_log(str(tmp_path / "nan"))) == 1  # only the finite step was logged


def test_non_finite_gradients_of_a_finite_loss_are_skipped_then_abort(tmp_path, sample_corpus, monkeypatch):
    real = steps.step_losses

    def nan_gradient(*args, **kwargs):
        out = real(*args, **kwargs)
        # sqrt at exactly zero: the value stays the loss, the gradient becomes NaN (the bug on TNO)
        out["loss"] = out["loss"] + torch.sqrt(out["loss"] - out["loss"].detach())
        return out

    monkeypatch.setattr(steps, "step_losses", nan_gradient)
    run = str(tmp_path / "nangrad")
    with pytest.warns(UserWarning, match=r"step 1 \(epoch 1\): finite loss .* non-finite gradients in encoder"), \
            pytest.raises(trainer.TrainingDiverged) as info:
        trainer.train(data=[sample_corpus[0]], out=run, cfg=_cfg(nan_patience=2))
    message = str(info.value)
    assert "2 consecutive steps skipped up to step 2" in message and "gradients" in message
    assert "lower lr" not in message
    assert not os.path.exists(os.path.join(run, "checkpoints", "latest.pth"))  # nothing written from NaN


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    from crossfuse.fusion.network import CrossFuse

    model = CrossFuse(TINY)
    good = str(tmp_path / "latest.pth")
    checkpoint.save(good, model)
    before = open(good, "rb").read()
    with torch.no_grad():
        next(model.decoder.parameters())[0] = float("nan")
    with pytest.raises(checkpoint.CheckpointError, match="refusing to write .* NaN or infinite"):
        checkpoint.save(good, model)
    assert open(good, "rb").read() == before and not os.path.exists(good + ".tmp")


@pytest.mark.slow
@needs_shared
def test_tno_pairs_with_black_infrared_train_to_finite_weights(tmp_path):
    """The reproduction of the NaN report: TNO 18 and 31 packed at stride 64, the demo config."""
    from crossfuse import manifest
    from crossfuse.align import BuildParams, EngineConfig, pack

    tno = manifest.load(str(REPO / "data_manifests" / "tno.json"))
    two = manifest.Manifest(name="tno-18-31", root=tno.root, origin=tno.origin,
                            pairs=tuple(p for p in tno.pairs if p.id in ("18", "31")))
    store = str(tmp_path / "tno.zarr")
    pack(dataset=two, out=store, params=BuildParams(patch=64, stride=64), engine=EngineConfig(workers=2))
    cfg = load(str(REPO / "configs" / "demo.toml"), {"epochs": 2, "phase1_epochs": 1, "steps_per_epoch": 0, "seed": 6})
    run = str(tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one step may be skipped
        result = trainer.train(data=[store], out=run, cfg=cfg)
    assert result.steps == 30 and math.isfinite(result.final_loss)
    model = checkpoint.load_model(os.path.join(run, "checkpoints", "latest.pth"))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, sample_corpus):
    run = tmp_path / "ddp"
    run_torchrun(["-m", "crossfuse.cli.main", "train", "--data", sample_corpus[0], "--out", str(run),
                  "--config", str(REPO / "configs" / "demo.toml"), "--epochs", "2", "--phase1-epochs", "1",
                  "--steps-per-epoch", "0", "--batch-size", "16", "-q"])
    per_rank = plan_epoch(Corpora([sample_corpus[0]]), seed=0, epoch=0, batch_size=16, rank=0, world=2).batches_per_rank
    single = plan_epoch(Corpora([sample_corpus[0]]), seed=0, epoch=0, batch_size=16).batches_per_rank
    assert 0 < per_rank < single
    assert len(_log(str(run))) == 2 * per_rank  # rank 0 logs its own share of each epoch
    assert (run / "checkpoints" / "epoch_0002.pth").exists()


def test_bf16_and_channels_last_paths_run(tmp_path, sample_corpus):
    cfg = _cfg(epochs=2, phase1_epochs=1, steps_per_epoch=1, bf16=True, channels_last=True)
    result = trainer.train(data=[sample_corpus[0]], out=str(tmp_path / "bf16"), cfg=cfg)
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in _log(str(tmp_path / "bf16")))


def test_a_torn_last_log_line_does_not_block_resume(tmp_path, sample_corpus):
    run = tmp_path / "torn"
    cfg = _cfg(epochs=2, phase1_epochs=1, steps_per_epoch=1)
    trainer.train(data=[sample_corpus[0]], out=str(run), cfg=cfg)
    log = run / "log.jsonl"
    log.write_text(log.read_text() + '{"epoch": 2, "step": 3, "pha')  # a kill in the middle of a write
    longer = _cfg(epochs=3, phase1_epochs=1, steps_per_epoch=1)
    with pytest.warns(UserWarning, match="last line was cut off"):
        result = trainer.train(data=[sample_corpus[0]], out=str(run), cfg=longer, resume=True)
    assert result.steps == 3 and [r["step"] for r in _log(str(run))] == [1, 2, 3]
    log.write_text("not json\n" + log.read_text())
    with pytest.raises(ConfigError, match="line 1 is not a JSON record"):
        trainer.train(data=[sample_corpus[0]], out=str(run), cfg=_cfg(epochs=4, phase1_epochs=1, steps_per_epoch=1),
                      resume=True)


def test_ablation_switches_are_saved_and_read_back(tmp_path):
    from crossfuse.fusion.config import TrainConfig, load, to_toml

    cfg = TrainConfig(consistency=False, aggressive="jpeg")
    (tmp_path / "c.toml").write_text(to_toml(cfg))
    assert load(str(tmp_path / "c.toml")) == cfg


def test_resume_refuses_a_corpus_rebuilt_at_the_same_path(tmp_path, engine):
    """Issue 30: a run's config.toml records each corpus' record digest; --resume after the store
    was rebuilt at the same path (other data) is refused unless --new-data."""
    from click.testing import CliRunner

    from crossfuse import manifest
    from crossfuse.align import BuildParams, pack
    from crossfuse.cli.main import main
    from tests.helpers import MANIFESTS

    store = str(tmp_path / "c.zarr")
    sample = manifest.load(str(MANIFESTS / "sample-target.json"))
    pack(dataset=sample, out=store, params=BuildParams(patch=64, stride=96, chunk=32), engine=engine)
    run = str(tmp_path / "run")
    args = ["train", "--model", "sdnet", "--out", run, "--steps-per-epoch", "1", "-b", "2", "-q"]
    r = CliRunner().invoke(main, args + ["--data", store, "--epochs", "1"])
    assert r.exit_code == 0, r.output
    pack(dataset=sample, out=store, params=BuildParams(patch=64, stride=128, chunk=32), engine=engine, overwrite=True)
    r = CliRunner().invoke(main, args + ["--resume", "--epochs", "2"])
    assert r.exit_code == 1 and "holds other data than" in r.output and "--new-data" in r.output
    r = CliRunner().invoke(main, args + ["--resume", "--epochs", "2", "--new-data"])
    assert r.exit_code == 0, r.output
