"""The second fault-injection pass (issue 20): each test names the item it covers, runs on real
sample files, and failed on the code before the fix."""

import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import zarr
from PIL import Image

from crossfuse import manifest
from crossfuse.align import BuildParams, pack
from crossfuse.cli.align import main as align_main
from crossfuse.cli.main import main
from crossfuse.errors import ManifestError, PairError, RunLockedError
from tests.helpers import REPO, crash_writes_at
from tests.test_untrusted import _dataset, _run, _tampered_checkpoint

PARAMS = BuildParams(patch=32, stride=32, chunk=16)
TINY_TOML = """epochs = 2
phase1_epochs = 1
batch_size = 4
steps_per_epoch = 2
lr = 1e-3
[network]
dim = 8
heads = 2
encoder_blocks = 1
decoder_blocks = 1
detail_nodes = 1
"""


class Pickled:
    """An arbitrary class: a pickle of it could run code (torch's weights_only load refuses it)."""


@pytest.fixture
def ckpt(tmp_path):
    return _tampered_checkpoint(tmp_path, lambda payload: None)


def _cli(*args, limit_bytes=None, timeout=300):
    """A crossfuse command in a subprocess (``limit_bytes``: RLIMIT_FSIZE, a full disk's stand-in)."""
    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit, cwd=REPO)


# ---- 1. a 48-bit PNG is 16-bit whatever mode Pillow opens it in ----

def test_1_a_48_bit_colour_png_is_refused_everywhere(tmp_path, ckpt):
    cv2 = pytest.importorskip("cv2")
    root, ids = _dataset(tmp_path, n=2)
    vis = np.asarray(Image.open(root / "vis" / f"{ids[0]}.png").convert("RGB"))
    wide = root / "vis" / f"{ids[0]}.png"
    cv2.imwrite(str(wide), (vis[:, :, ::-1].astype(np.uint16) * 257))  # bit depth 16, colour type 2
    assert Image.open(wide).mode == "RGB"  # the trap: Pillow keeps the high bytes only
    r = _run(align_main, "pack", "-m", root, "-o", tmp_path / "p.zarr", "-s", "32", "-q")
    assert r.exit_code == 1 and str(wide) in r.output and "16-bit" in r.output, r.output
    r = _run(main, "fuse", "--checkpoint", ckpt, "--pairs", root, "-o", tmp_path / "f", "-q")
    assert r.exit_code == 1 and "16-bit" in r.output and not (tmp_path / "f" / f"{ids[0]}.png").exists()
    fused = tmp_path / "fused"
    fused.mkdir()
    for i in ids:
        Image.open(root / "ir" / f"{i}.png").save(fused / f"{i}.png")
    r = _run(main, "eval", "-f", fused, "--pairs", root, "-j", "1", "-q")
    assert r.exit_code == 1 and str(wide) in r.output and "16-bit" in r.output, r.output


# ---- 2. symlinks cannot lead out of a dataset's root ----

def test_2_symlinks_out_of_the_root_are_refused_unless_followed(tmp_path, sample_target, engine):
    root, ids = _dataset(tmp_path, n=2)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "ir" / f"{ids[0]}.png").rename(outside / "secret.png")
    os.symlink(outside / "secret.png", root / "ir" / f"{ids[0]}.png")
    with pytest.raises(PairError, match="leads outside the dataset root"):
        pack(dataset=manifest.load(str(root)), out=str(tmp_path / "a.zarr"), params=PARAMS, engine=engine)
    summary = pack(dataset=manifest.load(str(root), follow_symlinks=True), out=str(tmp_path / "b.zarr"),
                   params=PARAMS, engine=engine)
    assert summary.counts.aux_pairs == 2 and "symlinks out of its root followed" in summary.record.inputs["dataset"]
    inside = tmp_path / "inner"  # a symlink that stays inside the root is fine
    (root / "ir" / f"{ids[0]}.png").unlink()
    (root / "kept").mkdir()
    (outside / "secret.png").rename(root / "kept" / "real.png")
    os.symlink(root / "kept" / "real.png", root / "ir" / f"{ids[0]}.png")
    assert pack(dataset=manifest.load(str(root)), out=str(inside), params=PARAMS, engine=engine).counts.aux_pairs == 2


def test_2_a_symlinked_subfolder_is_refused_through_the_cli(tmp_path):
    root, ids = _dataset(tmp_path, n=2)
    (root / "ir").rename(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", root / "ir")
    r = _run(align_main, "pack", "-m", root, "-o", tmp_path / "p.zarr", "-s", "32", "-q")
    assert r.exit_code == 1 and "leads outside the dataset root" in r.output and "--follow-symlinks" in r.output
    r = _run(align_main, "pack", "-m", root, "-o", tmp_path / "p.zarr", "-s", "32", "-q", "--follow-symlinks")
    assert r.exit_code == 0, r.output


# ---- 3. --overwrite never resumes ----

def test_3_overwrite_starts_over_instead_of_resuming_stale_batches(tmp_path, monkeypatch, engine):
    root, ids = _dataset(tmp_path, n=3)
    out = str(tmp_path / "c.zarr")
    with monkeypatch.context() as m:
        crash_writes_at(m, 0)
        with pytest.raises(Exception, match="simulated crash"):
            pack(dataset=manifest.load(str(root)), out=out, params=PARAMS, engine=engine)
    vis = root / "vis" / f"{ids[0]}.png"
    Image.fromarray(255 - np.asarray(Image.open(vis))).save(vis)  # the source changes after the scan
    summary = pack(dataset=manifest.load(str(root)), out=out, params=PARAMS, engine=engine, overwrite=True)
    fresh = pack(dataset=manifest.load(str(root)), out=str(tmp_path / "fresh.zarr"), params=PARAMS, engine=engine)
    assert not summary.resumed
    a, b = zarr.open_group(out, mode="r"), zarr.open_group(str(tmp_path / "fresh.zarr"), mode="r")
    assert np.array_equal(a["vis"][...], b["vis"][...]) and np.array_equal(a["means"][...], b["means"][...])
    assert fresh.record.means_before == summary.record.means_before


# ---- 12 and 31: a refused build can be corrected without --overwrite ----

def test_12_adding_skip_bad_after_a_refusal_resumes(tmp_path, engine):
    root, ids = _dataset(tmp_path, n=3)
    (root / "vis" / f"{ids[2]}.png").write_bytes(b"not an image")
    out = str(tmp_path / "c.zarr")
    with pytest.raises(PairError, match="Pass --skip-bad"):
        pack(dataset=manifest.load(str(root)), out=out, params=PARAMS, engine=engine)
    summary = pack(dataset=manifest.load(str(root)), out=out, params=PARAMS, engine=engine, skip_bad=True)
    assert summary.counts.aux_pairs == 2 and len(summary.skipped) == 1
    assert summary.record.inputs["skip_bad"] is True


def test_31_pairing_errors_are_found_before_anything_is_written(tmp_path, engine):
    root, ids = _dataset(tmp_path, n=3)
    (root / "ir" / f"{ids[1]}.png").unlink()
    out = tmp_path / "c.zarr"
    with pytest.raises(ManifestError, match=f"1 pair\\(s\\) lack a partner: '{ids[1]}' \\(infrared missing\\)"):
        pack(dataset=manifest.load(str(root)), out=str(out), params=PARAMS, engine=engine)
    assert not out.exists()


def test_31_a_store_that_finished_no_batch_is_replaced_without_overwrite(tmp_path, engine):
    root, ids = _dataset(tmp_path, n=2)
    (root / "vis" / f"{ids[0]}.png").write_bytes(b"broken")
    out = str(tmp_path / "c.zarr")
    with pytest.raises(PairError):
        pack(dataset=manifest.load(str(root)), out=out, params=BuildParams(patch=32, stride=32, chunk=16),
             engine=engine)
    assert zarr.open_group(out, mode="r").attrs["crossfuse"]["complete"] is False
    Image.open(root / "ir" / f"{ids[0]}.png").convert("RGB").save(root / "vis" / f"{ids[0]}.png")
    summary = pack(dataset=manifest.load(str(root)), out=out, params=BuildParams(patch=32, stride=48, chunk=16),
                   engine=engine)  # other inputs, yet nothing of the failed build was worth keeping
    assert summary.counts.aux_pairs == 2 and not summary.resumed


# ---- 4. one training per run folder ----

def test_4_two_trainings_racing_on_one_run_folder(tmp_path, sample_corpus):
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "crossfuse.cli.main", "train", "-d", sample_corpus[0], "-o", str(run), "-c",
           str(tmp_path / "tiny.toml"), "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(r[0] for r in results) == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert f"{run} is being trained by another process: pid" in loser[2] and "Traceback" not in loser[2], loser
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4]
    assert not (run / "train.lock").exists()


def test_4_a_held_run_folder_is_refused_naming_the_holder(tmp_path, sample_corpus):
    from crossfuse.fusion import trainer
    from crossfuse.fusion.config import load

    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    run = tmp_path / "run"
    held = trainer.lock_run(run)
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        trainer.train(data=[sample_corpus[0]], out=str(run), cfg=load(str(tmp_path / "tiny.toml")))
    assert not (run / "config.toml").exists()
    os.unlink(held)


# ---- 7. a full disk: one line, nothing half-written ----

def test_7_train_on_a_full_disk(tmp_path, sample_corpus):
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    run = tmp_path / "run"
    r = _cli("crossfuse.cli.main", "train", "-d", sample_corpus[0], "-o", run, "-c", tmp_path / "tiny.toml", "-q",
             limit_bytes=60_000)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "file too large" in r.stderr and "epoch_0001.pth" in r.stderr, r.stderr
    assert not list(run.rglob("*.tmp")) and not (run / "checkpoints" / "epoch_0001.pth").exists()


def test_7_fuse_and_eval_on_a_full_disk(tmp_path, ckpt):
    root, ids = _dataset(tmp_path, n=2, size=(256, 192))
    r = _cli("crossfuse.cli.main", "fuse", "--checkpoint", ckpt, "--pairs", root, "-o", tmp_path / "f", "-q",
             limit_bytes=20_000)
    assert r.returncode == 1 and "file too large" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not list((tmp_path / "f").glob("*.tmp")) and not list((tmp_path / "f").glob("*.png"))
    r = _cli("crossfuse.cli.main", "fuse", "--checkpoint", ckpt, "--pairs", root, "-o", tmp_path / "f", "-q",
             "--overwrite")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "scores.json"
    r = _cli("crossfuse.cli.main", "eval", "-f", tmp_path / "f", "--pairs", root, "-j", "1", "-q", "--json", out,
             limit_bytes=600)
    assert r.returncode == 1 and "file too large" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))
    r = _cli("crossfuse.cli.main", "eval", "-f", tmp_path / "f", "--pairs", root, "-j", "1", "-q", "--json", out)
    assert r.returncode == 0 and len(json.loads(out.read_text())["images"]) == 2


@pytest.mark.parametrize("limit", [20_000, 600_000])
def test_7_build_and_pack_on_a_full_disk_say_so_and_resume(tmp_path, limit):
    from tests.helpers import SAMPLE_AUX, SAMPLE_TARGET

    out = tmp_path / "b.zarr"
    args = ("crossfuse.cli.align", "build", "-t", SAMPLE_TARGET, "-a", SAMPLE_AUX, "-o", out, "-p", 64, "-s", 64,
            "-k", 200, "--chunk", 48, "-q")
    r = _cli(*args, limit_bytes=limit)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "file too large" in r.stderr, r.stderr
    assert "lost a task" not in r.stderr and "rerun the same command" in r.stderr
    assert not list(out.rglob("*.tmp"))
    assert _cli(*args).returncode == 0 and _cli("crossfuse.cli.align", "verify", out).returncode == 0
    r = _cli("crossfuse.cli.align", "pack", "--manifest", SAMPLE_AUX, "-o", tmp_path / "p.zarr", "-p", 64, "-s", 64,
             "-q", limit_bytes=limit)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "file too large" in r.stderr, r.stderr


# ---- 8. long names ----

def test_8_a_250_character_stem_fuses(tmp_path, ckpt):
    root, ids = _dataset(tmp_path, n=1)
    stem = "x" * 250
    for side in ("ir", "vis"):
        (root / side / f"{ids[0]}.png").rename(root / side / f"{stem}.png")
    r = _run(main, "fuse", "--checkpoint", ckpt, "--pairs", root, "-o", tmp_path / "f", "-q")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "f" / f"{stem}.png").is_file() and not list((tmp_path / "f").glob(".*.tmp"))


# ---- 19. an interrupt after the last epoch's checkpoint ----

def test_19_finishing_steps_complete_on_resume(tmp_path, sample_corpus, monkeypatch):
    from crossfuse.fusion import trainer
    from crossfuse.fusion.config import load

    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    cfg = load(str(tmp_path / "tiny.toml"))
    run = tmp_path / "run"
    real = trainer.sample_sheet

    def interrupted(fusion_model, net, vis, ir, path, *, phase, title):
        if phase == 2:
            raise KeyboardInterrupt
        return real(fusion_model, net, vis, ir, path, phase=phase, title=title)

    with monkeypatch.context() as m:
        m.setattr(trainer, "sample_sheet", interrupted)
        with pytest.raises(KeyboardInterrupt):
            trainer.train(data=[sample_corpus[0]], out=str(run), cfg=cfg)
    assert not (run / "samples_phase2.png").exists() and not (run / "train.lock").exists()
    result = trainer.train(data=[sample_corpus[0]], out=str(run), cfg=cfg, resume=True)
    assert result.epochs_run == 1 and (run / "samples_phase2.png").stat().st_size > 1000


# ---- 26. Ctrl-C always returns promptly ----

@pytest.mark.slow
def test_26_ctrl_c_at_many_points_of_a_build_returns_promptly(tmp_path):
    """SIGINT at varied delays (start-up, scan, selection, writing, shutdown), each with a
    deadline; every interrupted build resumes, and the last run completes a sound store."""
    import signal
    import time

    from crossfuse.align import verify
    from tests.helpers import SAMPLE_AUX, SAMPLE_TARGET

    out = tmp_path / "c.zarr"
    cmd = [sys.executable, "-m", "crossfuse.cli.align", "build", "-t", SAMPLE_TARGET, "-a", SAMPLE_AUX, "-k", "2000",
           "-s", "16", "--chunk", "16", "-j", "2", "-o", out]
    for delay in (1.5, 2.0, 2.6, 3.1, 3.7, 4.4, 5.2, 6.5, 8.0):  # after the interpreter has started
        proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"a SIGINT {delay} s into the build left it hanging for 30 s")
        # 130: interrupted with the resume hint; -2: the signal came as Python started or exited
        assert proc.returncode in (0, 1, 130, -signal.SIGINT), (delay, err)
        assert "Traceback" not in err or proc.returncode == -signal.SIGINT, (delay, err)
        if proc.returncode == 0:
            break
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode in (0, 1), r.stderr
    assert r.returncode == 0 or "already holds a complete corpus" in r.stderr
    assert verify(str(out), check_sources=False).ok


# ---- 9 and 10b: tiny images get a value or a clear error, in bounded time ----

def test_10b_eval_of_every_size_from_1_to_40_returns(tmp_path):
    """In a subprocess with a deadline: a 16x16 pair hung for ever in VIF (fast_length(0))."""
    script = f"""
import numpy as np, warnings
from PIL import Image
from crossfuse.errors import EvalError
from crossfuse.fusion.evaluate import score, MIN_SIDE, PROTOCOLS
warnings.simplefilter("ignore")
src = np.asarray(Image.open({str(REPO / 'data_manifests/sample/roadscene/vis/FLIR_00006.jpg')!r}).convert("RGB"))
for n in range(1, 41):
    paths = []
    for name, img in (("f", src[:n, :n, ::-1]), ("a", src[:n, :n, 1]), ("b", src[:n, :n])):
        paths.append("{tmp_path}/" + name + str(n) + ".png")
        Image.fromarray(np.ascontiguousarray(img)).save(paths[-1])
    for protocol in PROTOCOLS:
        try:
            values = score(fused=paths[0], ir=paths[1], vis=paths[2], protocol=protocol)
            assert n >= MIN_SIDE[protocol][0] and not any(np.isnan(v) for v in values.values()), (n, protocol, values)
        except EvalError as exc:
            assert n < MIN_SIDE[protocol][0] and paths[0] in str(exc), (n, protocol, exc)
print("done")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0 and "done" in r.stdout, r.stderr


def test_9_tiny_pairs_are_skipped_by_fuse_and_recorded_by_pack(tmp_path, ckpt, engine):
    root, ids = _dataset(tmp_path, n=3)
    for side in ("ir", "vis"):
        Image.open(root / side / f"{ids[1]}.png").crop((0, 0, 1, 1)).save(root / side / f"{ids[1]}.png")
    r = _run(main, "fuse", "--checkpoint", ckpt, "--pairs", root, "-o", tmp_path / "f", "-q")
    assert r.exit_code == 1 and f"{ids[1]}.png is 1x1" in r.output and "Traceback" not in r.output, r.output
    r = _run(main, "fuse", "--checkpoint", ckpt, "--pairs", root, "-o", tmp_path / "f", "-q", "--skip-bad",
             "--overwrite")
    assert r.exit_code == 0 and "wrote 2 fused image(s)" in r.output, r.output
    summary = pack(dataset=manifest.load(str(root)), out=str(tmp_path / "p.zarr"), params=PARAMS, engine=engine)
    assert [p.id for p in summary.skipped] == [ids[1]] and "smaller than the 32x32 patch" in summary.skipped[0].error
    assert summary.counts.patches > 0


def test_21_every_pair_bad_lists_what_was_skipped(tmp_path, engine):
    root, ids = _dataset(tmp_path, n=2)
    for i in ids:
        (root / "vis" / f"{i}.png").write_bytes(b"junk")
    r = _run(align_main, "pack", "-m", root, "-o", tmp_path / "p.zarr", "-s", "32", "-q", "--skip-bad")
    assert r.exit_code == 1 and "could be read (2 skipped)" in r.output, r.output
    assert all(f"{i}: pair {i!r}: " in r.output and "not an image file" in r.output for i in ids)


# ---- 6, 13, 28: checkpoints that cannot be used ----

def test_6_resume_from_a_wrong_shape_or_nan_checkpoint_is_refused_before_training(tmp_path, sample_corpus):
    import torch

    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    run = tmp_path / "run"
    r = _run(main, "train", "-d", sample_corpus[0], "-o", run, "-c", tmp_path / "tiny.toml", "-q", "--epochs", "1")
    assert r.exit_code == 0, r.output
    latest = run / "checkpoints" / "latest.pth"
    good = latest.read_bytes()
    payload = torch.load(latest, weights_only=True)
    key = next(iter(payload["DIDF_Encoder"]))
    payload["DIDF_Encoder"][key] = torch.zeros(3, 3)
    torch.save(payload, latest)
    r = _run(main, "train", "-o", run, "--resume", "--epochs", "2", "-q")
    assert r.exit_code == 1 and "does not fit the network" in r.output and "Traceback" not in r.output, r.output
    latest.write_bytes(good)
    payload = torch.load(latest, weights_only=True)
    payload["DIDF_Decoder"][next(iter(payload["DIDF_Decoder"]))].fill_(float("nan"))
    torch.save(payload, latest)
    r = _run(main, "train", "-o", run, "--resume", "--epochs", "2", "-q")
    assert r.exit_code == 1 and "NaN or infinite weights" in r.output, r.output
    assert len((run / "log.jsonl").read_text().splitlines()) == 2  # no step was taken


def test_13_28_foreign_files_get_crossfuse_words_not_torchs(tmp_path):
    import torch

    torch.save({"x": Pickled()}, tmp_path / "code.pth")  # an object torch's safe loader will not unpickle
    root, _ = _dataset(tmp_path, n=1)
    for path, words in ((tmp_path / "code.pth", "holds pickled Python objects"),
                        (REPO / "configs" / "demo.toml", "is not a PyTorch checkpoint")):
        r = _run(main, "fuse", "--checkpoint", path, "--pairs", root, "-o", tmp_path / "f", "-q")
        assert r.exit_code == 1 and words in r.output, r.output
        assert "weights_only" not in r.output and "will likely succeed" not in r.output


# ---- 10 and 30: outputs and inputs of the wrong kind ----

def test_10_report_into_a_file_and_30_train_on_a_dataset(tmp_path, sample_corpus):
    (tmp_path / "afile").write_text("mine")
    r = _run(align_main, "report", sample_corpus[0], "--out", tmp_path / "afile")
    assert r.exit_code == 1 and "is a file" in r.output and (tmp_path / "afile").read_text() == "mine", r.output
    for dataset in (REPO / "data_manifests" / "sample-target.json", REPO / "data_manifests" / "sample" / "roadscene"):
        r = _run(main, "train", "-d", dataset, "-o", tmp_path / "r", "-q")
        assert r.exit_code == 1 and "crossfuse-align pack --manifest" in r.output, r.output


# ---- 11. outputs stay under --out, symlinked sub-folders included ----

def test_11_fuse_never_writes_through_a_symlinked_subfolder(tmp_path, ckpt):
    root, ids = _dataset(tmp_path, n=1)
    m = {"name": "nested", "root": str(root), "pairs": [{"id": f"sub/{ids[0]}", "ir": f"ir/{ids[0]}.png",
                                                         "vis": f"vis/{ids[0]}.png"}]}
    (tmp_path / "m.json").write_text(json.dumps(m))
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "sub")
    r = _run(main, "fuse", "--checkpoint", ckpt, "--pairs", tmp_path / "m.json", "-o", tmp_path / "out", "-q")
    assert r.exit_code == 1 and "outside --out" in r.output and not list((tmp_path / "elsewhere").iterdir())


# ---- 5 and 18: the stats group and the record's own digest are checked ----

def _copy_store(tmp_path, sample_corpus):
    import shutil

    out = tmp_path / "copy.zarr"
    shutil.copytree(sample_corpus[0], out)
    return out


def _verify(store):
    r = _run(align_main, "verify", store, "--no-sources")
    return r.exit_code, r.output


@pytest.mark.parametrize("damage", ["edit pool_means", "delete a target_means chunk", "edit stats attributes",
                                    "delete the stats group"])
def test_5_the_stats_group_is_digested(tmp_path, sample_corpus, damage):
    store = _copy_store(tmp_path, sample_corpus)
    assert _verify(store)[0] == 0
    stats = zarr.open_group(str(store), mode="r+")["stats"]
    if damage == "edit pool_means":
        stats["pool_means"][0] = [0.0, 0.0, 0.0]
    elif damage == "delete a target_means chunk":
        for chunk in (store / "stats" / "target_means" / "c").rglob("*"):
            if chunk.is_file():
                chunk.unlink()
    elif damage == "edit stats attributes":
        stats.attrs["pool_patches"] = 1
    else:
        import shutil

        shutil.rmtree(store / "stats")
    code, output = _verify(store)
    assert code == 1 and "'stats' group" in output, output
    r = _run(align_main, "report", store, "--out", tmp_path / "report")
    assert r.exit_code == 1 and "'stats' group" in r.output and not (tmp_path / "report").exists(), r.output


def test_5_a_store_made_before_stats_were_digested_says_so(tmp_path, sample_corpus):
    store = _copy_store(tmp_path, sample_corpus)
    g = zarr.open_group(str(store), mode="r+")
    doc = dict(g.attrs["crossfuse"])
    doc.pop("stats_sha256")
    doc.pop("record_sha256")
    from crossfuse.schema import CorpusRecord

    g.attrs["crossfuse"] = CorpusRecord.from_json(doc, "x").sealed().to_json()  # as the previous release sealed it
    code, output = _verify(store)
    assert code == 0 and "no digest of its 'stats' group" in output, output


def test_18_a_record_without_its_digest_is_a_problem_unless_it_predates_digests(tmp_path, sample_corpus):
    store = _copy_store(tmp_path, sample_corpus)
    g = zarr.open_group(str(store), mode="r+")
    doc = dict(g.attrs["crossfuse"])
    g.attrs["crossfuse"] = {**{k: v for k, v in doc.items() if k != "record_sha256"}, "gamma": [1.0, 1.0, 1.0]}
    code, output = _verify(store)
    assert code == 1 and "record_sha256) was removed" in output, output
    # A store from before digests has neither chunk digests nor its own: a note, not a problem.
    g.attrs["crossfuse"] = {k: v for k, v in doc.items() if k not in ("record_sha256", "chunks", "stats_sha256")}
    code, output = _verify(store)
    assert code == 0 and "records no digests (made before crossfuse recorded them)" in output, output
    # Chunk digests removed, the record's own kept: a problem.
    g.attrs["crossfuse"] = {k: v for k, v in doc.items() if k != "chunks"}
    code, output = _verify(store)
    assert code == 1 and "'chunks' digests were removed" in output, output


# ---- 15. report never replaces files it did not write ----

def test_15_report_refuses_a_folder_with_a_users_files(tmp_path, sample_corpus):
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("<p>my page</p>")
    r = _run(align_main, "report", sample_corpus[0], "--out", out)
    assert r.exit_code == 1 and "index.html" in r.output and "--overwrite" in r.output, r.output
    assert (out / "index.html").read_text() == "<p>my page</p>" and sorted(os.listdir(out)) == ["index.html"]
    (out / "index.html").unlink()
    (out / "notes.txt").write_text("mine")
    r = _run(align_main, "report", sample_corpus[0], "--out", out)
    assert r.exit_code == 1 and "notes.txt" in r.output, r.output
    r = _run(align_main, "report", sample_corpus[0], "--out", out, "--overwrite")
    assert r.exit_code == 0 and (out / "notes.txt").read_text() == "mine", r.output
    (out / "notes.txt").unlink()
    r = _run(align_main, "report", sample_corpus[0], "--out", out)  # its own earlier report: replaced
    assert r.exit_code == 0 and "crossfuse-align report" in (out / "index.html").read_text(), r.output


# ---- 14. an experiment checks every path of its spec before any work ----

def test_14_an_experiment_with_a_missing_test_manifest_starts_nothing(tmp_path):
    spec = (REPO / "recipes" / "smoke.toml").read_text().replace("../data_manifests/", f"{REPO}/data_manifests/")
    spec = spec.replace(f"{REPO}/data_manifests/sample-target-test.json", str(tmp_path / "gone.json"))
    assert str(tmp_path / "gone.json") in spec
    (tmp_path / "spec.toml").write_text(spec)
    r = _run(main, "experiment", tmp_path / "spec.toml", "-o", tmp_path / "exp", "-q")
    assert r.exit_code == 1 and "[tests.sample-test]" in r.output and "gone.json does not exist" in r.output, r.output
    assert not (tmp_path / "exp").exists()
    # A manifest listing an image that is not there is named too, before anything is built.
    root, ids = _dataset(tmp_path / "data", n=2)
    (root / "vis" / f"{ids[1]}.png").unlink()
    m = {"name": "holey", "root": str(root), "pairs": [{"id": i, "ir": f"ir/{i}.png", "vis": f"vis/{i}.png"}
                                                       for i in ids]}
    (tmp_path / "holey.json").write_text(json.dumps(m))
    (tmp_path / "spec.toml").write_text(spec.replace(str(tmp_path / "gone.json"), str(tmp_path / "holey.json")))
    r = _run(main, "experiment", tmp_path / "spec.toml", "-o", tmp_path / "exp", "-q")
    assert r.exit_code == 1 and f"vis/{ids[1]}.png" in r.output and "do not exist" in r.output, r.output
    assert not (tmp_path / "exp").exists()


# ---- 23. the id rule and its wording agree ----

@pytest.mark.parametrize("bad", ["two\nlines", "<script>alert(1)</script>", "a|b", "tab\there", 'quote"d', "x:y"])
def test_23_ids_the_rule_refuses_are_refused_in_its_words(tmp_path, bad):
    root, ids = _dataset(tmp_path, n=1)
    m = {"name": "odd", "root": str(root), "pairs": [{"id": bad, "ir": f"ir/{ids[0]}.png", "vis": f"vis/{ids[0]}.png"}]}
    (tmp_path / "m.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="printable characters except") as exc:
        manifest.load(str(tmp_path / "m.json"))
    assert repr(bad) in str(exc.value)


def test_23_ids_the_rule_allows_fuse(tmp_path, ckpt):
    root, ids = _dataset(tmp_path, n=1)
    good = ["sub/FLIR (copy) #2", "é-ü_1.v2"]
    m = {"name": "ok", "root": str(root), "pairs": [{"id": g, "ir": f"ir/{ids[0]}.png", "vis": f"vis/{ids[0]}.png"}
                                                    for g in good]}
    (tmp_path / "m.json").write_text(json.dumps(m))
    r = _run(main, "fuse", "--checkpoint", ckpt, "--pairs", tmp_path / "m.json", "-o", tmp_path / "out", "-q")
    assert r.exit_code == 0 and all((tmp_path / "out" / f"{g}.png").is_file() for g in good), r.output


# ---- 16, 17, 29 and 33: eval and leaderboards ----

def _fused_like(root, ids, folder, which=None):
    """A method folder of plain (colour) max fusions of the pairs ``which`` (default all) of ``root``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in which if which is not None else ids:
        ir = np.asarray(Image.open(root / "ir" / f"{i}.png").convert("L"))
        vis = np.asarray(Image.open(root / "vis" / f"{i}.png").convert("RGB"))
        Image.fromarray(np.maximum(ir[..., None], vis)).save(folder / f"{i}.png")
    return folder


def test_16_two_candidates_for_one_pair_are_refused_naming_both(tmp_path):
    root, ids = _dataset(tmp_path, n=2)
    for board in (False, True):
        top = tmp_path / f"board{board}"
        method = _fused_like(root, ids, top / "B" if board else top)
        if board:
            _fused_like(root, ids, top / "A")
        Image.open(method / f"{ids[1]}.png").save(method / f"{ids[1]}.jpg")
        r = _run(main, "eval", "--fused", top, "--pairs", root, "-q", "-j", "1")
        assert r.exit_code == 1 and f"{ids[1]}.jpg and " in r.output and f"{ids[1]}.png are both" in r.output, r.output


def test_17_method_names_are_escaped_in_the_markdown_table(tmp_path):
    root, ids = _dataset(tmp_path, n=1)
    names = ["a|b", "two\nlines", "<script>alert(1)"]
    for name in names:
        _fused_like(root, ids, tmp_path / "board" / name)
    r = _run(main, "eval", "--fused", tmp_path / "board", "--pairs", root, "-q", "-j", "1",
             "--markdown", tmp_path / "b.md")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "b.md").read_text().splitlines()
    assert len(lines) == 2 + len(names)  # a header, a rule, one line per method: no name broke a row
    cells = {line.replace("\\|", "").count("|") for line in lines}
    assert cells == {lines[0].count("|")}, lines  # every row has the header's number of cells
    text = "\n".join(lines)
    assert "<script>" not in text and "&lt;script&gt;" in text and "a\\|b" in text and "two lines" in text


def test_29_eval_names_every_missing_image_and_can_skip_them(tmp_path):
    root, ids = _dataset(tmp_path, n=3)
    fused = _fused_like(root, ids, tmp_path / "fused", which=ids[:1])
    r = _run(main, "eval", "--fused", fused, "--pairs", root, "-q", "-j", "1")
    assert r.exit_code == 1 and "no fused image for 2 of 3 pairs" in r.output, r.output
    assert ids[1] in r.output and ids[2] in r.output and "--skip-missing" in r.output
    r = _run(main, "eval", "--fused", fused, "--pairs", root, "-q", "-j", "1", "--skip-missing",
             "--json", tmp_path / "s.json", "--markdown", tmp_path / "s.md")
    assert r.exit_code == 0 and f"skipped 2 pair(s) with no fused image (--skip-missing): pairs/{ids[1]}" in r.output
    doc = json.loads((tmp_path / "s.json").read_text())
    assert [i["name"] for i in doc["images"]] == [ids[0]]
    assert doc["skipped_missing"] == [{"dataset": "pairs", "name": ids[1]}, {"dataset": "pairs", "name": ids[2]}]
    assert f"pairs/{ids[2]}" in (tmp_path / "s.md").read_text()
    # A leaderboard: each method lacks another pair; every method is scored on the pair all have.
    board = tmp_path / "board"
    _fused_like(root, ids, board / "A", which=ids[:2])
    _fused_like(root, ids, board / "B", which=[ids[0], ids[2]])
    r = _run(main, "eval", "--fused", board, "--pairs", root, "-q", "-j", "1")
    assert r.exit_code == 1 and "method A" in r.output and ids[2] in r.output, r.output
    r = _run(main, "eval", "--fused", board, "--pairs", root, "-q", "-j", "1", "--skip-missing",
             "--json", tmp_path / "b.json")
    doc = json.loads((tmp_path / "b.json").read_text())
    assert r.exit_code == 0 and {(i["method"], i["name"]) for i in doc["images"]} == {("A", ids[0]), ("B", ids[0])}
    assert {g["name"] for g in doc["skipped_missing"]} == {ids[1], ids[2]}


def test_33_eval_prints_narrow_tables_and_names_each_method_without_a_terminal(tmp_path):
    root, ids = _dataset(tmp_path, n=2, size=(64, 64))
    board = tmp_path / "board"
    for name in ("first-method", "second-method"):
        _fused_like(root, ids, board / name)
    r = _run(main, "eval", "--fused", board, "--pairs", root, "-j", "1")  # no -q, and no terminal
    assert r.exit_code == 0 and "evaluate first-method" in r.output and "evaluate second-method" in r.output, r.output
    for fused in (board, board / "first-method"):
        r = _run(main, "eval", "--fused", fused, "--pairs", root, "-q", "-j", "1", "--protocol", "all")
        assert r.exit_code == 0 and max(map(len, r.output.splitlines())) <= 160, r.output
        assert "cddfuse:Qabf" in r.output and "vifb:Qcv" in r.output


def test_33_every_help_fits_80_columns_without_breaking_words():
    from crossfuse.cli.align import main as align

    for group in (main, align):
        for name in [None, *group.commands]:
            r = _run(group, *([name] if name else []), "--help")
            assert r.exit_code == 0 and max(map(len, r.output.splitlines())) <= 80, (name, r.output)
            assert "Qab f" not in r.output


# ---- 20. a grey + alpha visible image ----

def test_20_a_grey_alpha_visible_image_reads_as_grey_and_mixes_are_named(tmp_path):
    root, ids = _dataset(tmp_path, n=1, size=(64, 64))
    fused = tmp_path / "fused"
    fused.mkdir()
    Image.open(_fused_like(root, ids, tmp_path / "colour") / f"{ids[0]}.png").convert("L").save(fused / f"{ids[0]}.png")
    grey = tmp_path / "grey"
    import shutil

    shutil.copytree(root, grey)
    Image.open(root / "vis" / f"{ids[0]}.png").convert("L").save(grey / "vis" / f"{ids[0]}.png")
    Image.open(root / "vis" / f"{ids[0]}.png").convert("LA").save(root / "vis" / f"{ids[0]}.png")
    scores = []
    for pairs in (root, grey):
        r = _run(main, "eval", "--fused", fused, "--pairs", pairs, "-q", "-j", "1", "--protocol", "vifb",
                 "--json", tmp_path / f"{pairs.name}.json")
        assert r.exit_code == 0, r.output
        scores.append({k: v for k, v in json.loads((tmp_path / f"{pairs.name}.json").read_text())["images"][0].items()
                       if k != "dataset"})
    assert scores[0] == scores[1]  # LA is scored as its grey image, as MATLAB's imread reads it
    shutil.copy(tmp_path / "colour" / f"{ids[0]}.png", grey / "vis" / f"{ids[0]}.png")
    r = _run(main, "eval", "--fused", fused, "--pairs", grey, "-q", "-j", "1", "--protocol", "vifb")
    assert r.exit_code == 1 and f"fused/{ids[0]}.png is a gray image but" in r.output, r.output
    assert f"grey/vis/{ids[0]}.png is in colour" in r.output


# ---- 24. a race on an object store is reported with the store's URL ----

@pytest.mark.slow
def test_24_the_loser_of_an_s3_race_is_told_the_url(s3):
    from crossfuse.align import store as _store
    from crossfuse.errors import StoreLockedError
    from crossfuse.schema import CorpusRecord

    url = "s3://crossfuse/raced.zarr"
    header = dict(kind="packed", fingerprint="f", scan_fingerprint="s", inputs={}, overwrite=False)
    first, _ = _store.open_for_build(url, token="first", **header)
    _store.open_for_build(url, token="second", **header)  # the second build takes the store over
    with pytest.raises(StoreLockedError) as exc:
        _store.finalize(url, first, CorpusRecord(kind="packed"), "first")
    assert str(exc.value).startswith(f"{url}: another build took this store over"), exc.value
    assert "FsspecStore" not in str(exc.value)


# ---- 25. each message says what happened and the one thing to do ----

def test_25_messages_say_what_happened_and_what_to_do(tmp_path, sample_corpus, ckpt):
    import shutil

    store = _copy_store(tmp_path, sample_corpus)
    chunk = store / "vis" / "c" / "0" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes() + b"\0")  # resized: not a missing chunk, not zeros
    r = _run(main, "train", "-d", store, "-o", tmp_path / "run", "-q")
    assert r.exit_code == 1 and "is damaged: array 'vis' chunk 0" in r.output and "Rebuild the corpus" in r.output
    assert "would read it as zeros" not in r.output
    # A truncated image: what happened, not the 8-bit advice.
    root, ids = _dataset(tmp_path / "d", n=1)
    fused = _fused_like(root, ids, tmp_path / "fused")
    data = (fused / f"{ids[0]}.png").read_bytes()
    (fused / f"{ids[0]}.png").write_bytes(data[: len(data) // 2])
    r = _run(main, "eval", "--fused", fused, "--pairs", root, "-q", "-j", "1")
    assert r.exit_code == 1 and "truncated" in r.output and "copy the file again" in r.output, r.output
    assert "8-bit" not in r.output
    # A finished corpus that lost a chunk: the build command says it is damaged and to add --overwrite.
    shutil.rmtree(store)
    store = _copy_store(tmp_path, sample_corpus)
    (store / "ir" / "c" / "0" / "0" / "0" / "0").unlink()
    from tests.helpers import SAMPLE_AUX, SAMPLE_PARAMS, SAMPLE_TARGET

    p = SAMPLE_PARAMS
    r = _run(align_main, "build", "-t", SAMPLE_TARGET, "-a", SAMPLE_AUX, "-o", store, "-k", p["k"], "-p", p["patch"],
             "-s", p["stride"], "--chunk", p["chunk"], "-q")
    assert r.exit_code == 1 and "damaged since (array 'ir' chunk 0" in r.output and "with --overwrite" in r.output, \
        r.output


# ---- 32. a typo in a config key is named, with the key it was probably meant to be ----

def test_32_config_key_typos_are_named_with_a_suggestion(tmp_path, sample_corpus):
    for text, expected in (("[network]\nheds = 2\n", "unknown key in [network]: 'heds' (did you mean 'heads'?)"),
                           ("batchsize = 4\n", "unknown key: 'batchsize' (did you mean 'batch_size'?)")):
        (tmp_path / "bad.toml").write_text(text)
        r = _run(main, "train", "-d", sample_corpus[0], "-o", tmp_path / "run", "-c", tmp_path / "bad.toml", "-q")
        assert r.exit_code == 1 and expected in r.output, r.output
    spec = (REPO / "recipes" / "smoke.toml").read_text().replace("sheet_pairs = 2", "sheet_pair = 2")
    (tmp_path / "spec.toml").write_text(spec)
    r = _run(main, "experiment", tmp_path / "spec.toml", "-o", tmp_path / "exp", "-q")
    assert r.exit_code == 1 and "'sheet_pair' (did you mean 'sheet_pairs'?)" in r.output, r.output


def test_33_manifest_takes_q_and_shows_progress_without_it(tmp_path):
    root, ids = _dataset(tmp_path, n=2)
    r = _run(align_main, "manifest", root, "-o", tmp_path / "m.json", "-q")
    assert r.exit_code == 0 and "checksum" not in r.output and "wrote" in r.output, r.output
    r = _run(align_main, "manifest", root, "-o", tmp_path / "m.json", "--overwrite")
    assert r.exit_code == 0 and "checksum pairs" in r.output, r.output
    assert len(json.loads((tmp_path / "m.json").read_text())["pairs"]) == 2


def test_2_the_follow_symlinks_advice_works_where_it_is_given(tmp_path):
    """Issue 30: manifest, fuse and eval advised --follow-symlinks without having it."""
    from crossfuse.cli.main import main as crossfuse_main

    root, ids = _dataset(tmp_path, n=2)
    (root / "ir").rename(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", root / "ir")
    r = _run(align_main, "manifest", root, "-o", tmp_path / "m.json", "-q")
    assert r.exit_code == 1 and "--follow-symlinks" in r.output
    assert _run(align_main, "manifest", root, "-o", tmp_path / "m.json", "-q", "--follow-symlinks").exit_code == 0
    from crossfuse import models

    seafusion = models.get("seafusion")
    ckpt = tmp_path / "s.pth"
    import torch

    torch.save(seafusion.official_state(seafusion.build(seafusion.settings())), ckpt)
    fuse = ["fuse", "--checkpoint", ckpt, "--model", "seafusion", "--pairs", root, "-o", tmp_path / "f", "-q"]
    r = _run(crossfuse_main, *fuse)
    assert r.exit_code == 1 and "--follow-symlinks" in r.output
    assert _run(crossfuse_main, *fuse, "--follow-symlinks").exit_code == 0
    ev = ["eval", "--fused", tmp_path / "f", "--pairs", root, "-q", "-j", "1"]
    r = _run(crossfuse_main, *ev)
    assert r.exit_code == 1 and "--follow-symlinks" in r.output
    assert _run(crossfuse_main, *ev, "--follow-symlinks").exit_code == 0
