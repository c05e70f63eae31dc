"""``crossfuse train`` and ``crossfuse fuse`` through CliRunner, on the session's sample corpus."""


from click.testing import CliRunner
from PIL import Image

from crossfuse.cli.main import main
from crossfuse import manifest
from tests.helpers import REFERENCE, REPO, SAMPLE_TARGET

DEMO = str(REPO / "configs" / "demo.toml")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_resume_and_fuse(tmp_path, sample_corpus):
    run = tmp_path / "run"
    r = _run("train", "--data", sample_corpus[0], "--out", run, "--config", DEMO, "--epochs", "2",
             "--phase1-epochs", "1", "--steps-per-epoch", "2", "-q")
    assert r.exit_code == 0, r.output
    assert "trained epochs 1-2 of 2 (4 steps in all)" in r.output
    assert 'steps_per_epoch = 2' in (run / "config.toml").read_text()
    r = _run("train", "--data", sample_corpus[0], "--out", run, "-q")
    assert r.exit_code == 1 and "--resume" in r.output
    r = _run("train", "--data", sample_corpus[0], "--out", run, "--resume", "-q")  # nothing left to do
    assert r.exit_code == 0 and "already finished: 2 epochs (4 steps)" in r.output and "nan" not in r.output
    assert len((run / "log.jsonl").read_text().splitlines()) == 4
    out = tmp_path / "fused"
    r = _run("fuse", "--checkpoint", run / "checkpoints" / "latest.pth", "--pairs", SAMPLE_TARGET, "-o", out, "-q")
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*.png"))) == 8 and Image.open(next(out.glob("*.png"))).mode == "RGB"
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    r = _run("fuse", "--checkpoint", run / "checkpoints" / "latest.pth", "--pairs", SAMPLE_TARGET, "-o", out, "--gray", "-q")
    assert r.exit_code == 1 and "--overwrite" in r.output and "--resume" in r.output
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before  # nothing lost
    r = _run("fuse", "--checkpoint", run / "checkpoints" / "latest.pth", "--pairs", SAMPLE_TARGET, "-o", tmp_path / "g",
             "--gray", "--tile", "128", "--overlap", "16", "-q", "--sheet", tmp_path / "sheet.png", "--sheet-pairs", 3)
    assert r.exit_code == 0 and Image.open(next((tmp_path / "g").glob("*.png"))).mode == "L"
    assert "comparison sheet" in r.output and "(3 pairs)" in r.output
    with Image.open(tmp_path / "sheet.png") as sheet:  # three rows of IR | VIS | fused
        assert sheet.format == "PNG" and sheet.width > 600 and sheet.height > sheet.width / 2
    # The trainer drew its loss curves and a sample sheet at the end of each phase.
    for name in ("loss_phase1.png", "loss_phase2.png", "samples_phase1.png", "samples_phase2.png"):
        with Image.open(run / name) as img:
            assert img.format == "PNG" and img.width >= 300 and img.height >= 300


def test_resume_takes_the_runs_config_and_corpora_and_flags_over_them(tmp_path, sample_corpus):
    run = tmp_path / "run"
    r = _run("train", "-d", sample_corpus[0], "-o", run, "-c", DEMO, "--epochs", "2", "--phase1-epochs", "1",
             "--steps-per-epoch", "2", "-q")
    assert r.exit_code == 0, r.output
    # neither --data nor --config: the run's own; --epochs 3 extends it (defaults would be 160/40, dim 64)
    r = _run("train", "-o", run, "--resume", "--epochs", "3", "-q")
    assert r.exit_code == 0, r.output
    assert "trained epoch 3 of 3 (6 steps in all)" in r.output
    saved = (run / "config.toml").read_text()
    assert "epochs = 3\n" in saved and "phase1_epochs = 1\n" in saved and "dim = 16\n" in saved
    assert f'stores = ["{sample_corpus[0]}"]' in saved
    assert len((run / "log.jsonl").read_text().splitlines()) == 6
    r = _run("train", "-o", run, "--resume", "--steps-per-epoch", "3", "-q")  # finished; flags do not break it
    assert r.exit_code == 0 and "already finished: 3 epochs" in r.output
    other = tmp_path / "other.zarr"
    import shutil

    shutil.copytree(sample_corpus[0], other)
    r = _run("train", "-d", other, "-o", run, "--resume", "--epochs", "4", "-q")
    assert r.exit_code == 1 and "was trained on" in r.output and "--new-data" in r.output
    r = _run("train", "-d", other, "-o", run, "--resume", "--epochs", "4", "--new-data", "-q")
    assert r.exit_code == 0 and "trained epoch 4 of 4" in r.output
    assert f'stores = ["{other}"]' in (run / "config.toml").read_text()
    r = _run("train", "-o", run, "--resume", "-c", DEMO, "--epochs", "5", "-q")  # the demo file's own keys apply
    assert r.exit_code == 0 and "trained epoch 5 of 5" in r.output
    r = _run("train", "-d", sample_corpus[0], "-o", run, "-c", DEMO, "--epochs", "1", "--phase1-epochs", "1",
             "--steps-per-epoch", "1", "--overwrite", "-q")
    assert r.exit_code == 0 and "trained epoch 1 of 1 (1 steps in all)" in r.output
    assert len((run / "log.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_0001.pth", "latest.pth"]


def test_fuse_resumes_skips_bad_pairs_and_refuses_non_datasets(tmp_path):
    ckpt = str(REFERENCE / "official_net_seed0.pth")
    if not (REFERENCE / "official_net_seed0.pth").is_file():
        import pytest

        pytest.skip("../shared/reference is absent")
    folder = tmp_path / "pairs"
    for side in ("ir", "vis"):
        (folder / side).mkdir(parents=True)
    target = manifest.load(str(SAMPLE_TARGET))
    for pair in target.pairs[:3]:
        for side in ("ir", "vis"):
            Image.open(target.url(getattr(pair, side))).crop((0, 0, 96, 64)).save(folder / side / f"{pair.id}.png")
    out = tmp_path / "fused"
    r = _run("fuse", "--checkpoint", ckpt, "--pairs", folder, "-o", out, "-q")
    assert r.exit_code == 0 and "wrote 3 fused image(s)" in r.output
    first = sorted(out.glob("*.png"))
    kept = first[0].read_bytes()
    first[1].unlink()  # as a killed run leaves it: some outputs missing (never half-written: tmp + rename)
    r = _run("fuse", "--checkpoint", ckpt, "--pairs", folder, "-o", out, "--resume", "-q")
    assert r.exit_code == 0 and "wrote 1 fused image(s)" in r.output and "(2 already there)" in r.output
    assert first[0].read_bytes() == kept and first[1].exists()
    r = _run("fuse", "--checkpoint", ckpt, "--pairs", folder, "-o", out, "--resume", "--gray", "-q")
    assert r.exit_code == 1 and "other settings" in r.output
    # --overwrite with other settings, killed after the first image: the rest must not be kept by --resume
    from crossfuse.fusion import inference

    real, calls = inference.fuse_images, {"n": 0}

    def dies_on_the_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    inference.fuse_images = dies_on_the_second
    try:
        r = _run("fuse", "--checkpoint", ckpt, "--pairs", folder, "-o", out, "--overwrite", "--gray", "-q")
    finally:
        inference.fuse_images = real
    assert r.exit_code == 130 and "--resume" in r.output and len(list(out.glob("*.png"))) == 1
    r = _run("fuse", "--checkpoint", ckpt, "--pairs", folder, "-o", out, "--resume", "--gray", "-q")
    assert r.exit_code == 0 and "wrote 2 fused image(s)" in r.output
    assert all(Image.open(p).mode == "L" for p in out.glob("*.png"))
    bad = folder / "vis" / f"{target.pairs[2].id}.png"
    bad.write_bytes(bad.read_bytes()[:300])
    r = _run("fuse", "--checkpoint", ckpt, "--pairs", folder, "-o", tmp_path / "f2", "-q")
    assert r.exit_code == 1 and r.output.count("--skip-bad") == 1 and "BytesIO" not in r.output
    r = _run("fuse", "--checkpoint", ckpt, "--pairs", folder, "-o", tmp_path / "f3", "--skip-bad", "-q")
    assert r.exit_code == 0 and "wrote 2 fused image(s)" in r.output
    assert f"skipped 1 bad pair(s):\n  {target.pairs[2].id}: " in r.output
    empty = tmp_path / "empty"
    (empty / "ir").mkdir(parents=True)
    (empty / "vis").mkdir()
    r = _run("fuse", "--checkpoint", ckpt, "--pairs", empty, "-o", tmp_path / "f4", "-q")
    assert r.exit_code == 1 and "lists no image pairs" in r.output
    store = tmp_path / "c.zarr"
    store.mkdir()
    (store / "zarr.json").write_text("{}")
    r = _run("fuse", "--checkpoint", ckpt, "--pairs", store, "-o", tmp_path / "f5", "-q")
    assert r.exit_code == 1 and "is a Zarr store" in r.output


def test_clear_errors(tmp_path, sample_corpus):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 3\n")
    r = _run("train", "--data", sample_corpus[0], "--out", tmp_path / "r", "--config", bad)
    assert r.exit_code == 1 and "unknown key: 'epochz' (did you mean 'epochs'?)" in r.output
    r = _run("train", "--data", tmp_path / "nothing.zarr", "--out", tmp_path / "r")
    assert r.exit_code == 1 and "no Zarr group" in r.output
    r = _run("fuse", "--checkpoint", tmp_path / "none.pth", "--pairs", SAMPLE_TARGET, "-o", tmp_path / "o")
    assert r.exit_code == 1 and "does not exist" in r.output
    r = _run("train", "--data", sample_corpus[0], "--weight", "1", "--weight", "2", "--out", tmp_path / "r")
    assert r.exit_code == 1 and "one --weight per --data" in r.output


def test_help_teaches():
    r = _run("train", "--help")
    assert r.exit_code == 0 and "--resume" in r.output and "torchrun" in r.output
    flat = " ".join(r.output.split())
    assert "[default: 160]" in flat and "[default: 40]" in flat and "[160]" not in flat.replace("[default: 160]", "")
    assert "1e-5" in flat and "1e-6" not in flat
    assert "1e-5" in " ".join(_run("fuse", "--help").output.split())


def _short_flags(group) -> dict[str, set[str]]:
    import click

    seen: dict[str, set[str]] = {}
    for command in group.commands.values():
        for param in command.params:
            if isinstance(param, click.Option):
                longs = [o for o in param.opts + param.secondary_opts if o.startswith("--")] or [param.name]
                for short in (o for o in param.opts + param.secondary_opts if len(o) == 2):
                    seen.setdefault(short, set()).add(longs[0])
    return seen


def test_each_short_flag_means_one_thing_across_both_commands():
    from crossfuse.cli.align import main as align_main

    merged: dict[str, set[str]] = {}
    for group in (main, align_main):
        for short, longs in _short_flags(group).items():
            merged.setdefault(short, set()).update(longs)
    assert {s: sorted(l) for s, l in merged.items() if len(l) > 1} == {}
    assert merged["-k"] == {"--k"} and merged["-p"] == {"--patch"} and merged["-j"] == {"--workers"}


def test_a_config_value_of_the_wrong_type_is_named(tmp_path, sample_corpus):
    bad = tmp_path / "bad.toml"
    bad.write_text('epochs = "two"\n')
    r = _run("train", "-d", sample_corpus[0], "-o", tmp_path / "r", "-c", bad)
    assert r.exit_code == 1 and "epochs must be an integer, got 'two' (str)" in r.output
    bad.write_text("[network]\ndim = 1.5\n")
    r = _run("train", "-d", sample_corpus[0], "-o", tmp_path / "r", "-c", bad)
    assert r.exit_code == 1 and "network.dim must be an integer" in r.output


def test_outputs_under_a_missing_folder_are_refused_before_any_work(tmp_path):
    """Issue 30 WEAK: eval --csv/--json and fuse --sheet under a missing parent failed only after
    all the work."""
    import time

    from crossfuse.cli.main import main as crossfuse_main

    fused = tmp_path / "fused"
    fused.mkdir()
    for option in ("--csv", "--json", "--markdown"):
        started = time.perf_counter()
        r = CliRunner().invoke(crossfuse_main, ["eval", "--fused", str(fused), "--pairs", str(SAMPLE_TARGET),
                                                option, str(tmp_path / "missing" / "x.out")])
        assert r.exit_code == 1 and "does not exist" in r.output and time.perf_counter() - started < 5
    (tmp_path / "afile").write_text("x")
    r = CliRunner().invoke(crossfuse_main, ["fuse", "--checkpoint", str(tmp_path / "none.pth"), "--pairs",
                                            str(SAMPLE_TARGET), "-o", str(tmp_path / "o"), "--sheet",
                                            str(tmp_path / "afile" / "s.png")])
    assert r.exit_code == 1 and "is a file" in r.output and not (tmp_path / "o").exists()
