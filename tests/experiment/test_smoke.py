"""``crossfuse experiment recipes/smoke.toml`` end to end on the bundled sample (real pairs):
every stage runs, results and plots are written, a rerun reuses everything, a lost stage is
redone alone, --only runs one variant, and another spec is refused in the same folder."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from crossfuse.cli.main import main
from tests.helpers import REPO

SMOKE = str(REPO / "recipes" / "smoke.toml")
pytestmark = pytest.mark.slow


def _run(*args):
    r = CliRunner().invoke(main, ["experiment", SMOKE, "-q", "-j", "2", *args])
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "smoke"
    return out, _run("--out", str(out))


def test_results_hold_every_variant_seed_and_image(finished):
    out, log = finished
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    variants = ["target-only", "as-is", "aligned@k24", "aligned@k48"]
    images = {"FLIR_04722", "FLIR_08094"}
    for v in variants:
        for seed in ("0", "1"):
            mine = [r for r in rows if r["variant"] == v and r["seed"] == seed]
            assert {r["image"] for r in mine} == images and all(r["dataset"] == "sample-test" for r in mine)
            assert all(np.isfinite(float(r[m])) for r in mine for m in ("EN", "SD", "VIF", "Qabf", "SSIM"))
    assert {r["variant"] for r in rows if not r["seed"]} == {"mean fusion", "max fusion"}
    md = (out / "results.md").read_text()
    for name in variants + ["mean fusion", "max fusion"]:
        assert f"| {name} |" in md
    assert "±" in md and "Not yet scored" not in md and "## Verdicts: each variant against target-only" in md
    assert md.index("## Verdicts") < md.index("## Means")  # results.md leads with the verdicts
    verdict_rows = [line for line in md.splitlines() if line.startswith("| as-is |")]
    assert verdict_rows and "[" in verdict_rows[0]  # a paired difference with its interval
    # Two seeds really differ (independent initialisation and shuffling).
    a = [float(r["EN"]) for r in rows if r["variant"] == "as-is" and r["seed"] == "0"]
    b = [float(r["EN"]) for r in rows if r["variant"] == "as-is" and r["seed"] == "1"]
    assert a != b
    # Each corpus was built once and is shared.
    assert sorted(os.listdir(out / "corpora")) == ["aux-aligned@k24.zarr", "aux-aligned@k48.zarr", "aux.zarr",
                                                   "target.zarr"]
    assert log.count("aligning") == 2 and log.count("packing") == 2
    assert log.count("results: ") == 1  # named once, at the end
    # -j 2: two runs at once, their stage lines relayed to the parent's log.
    assert "8 run(s), up to 2 at once on 1 thread(s) each" in log and log.count("fuse sample-test into") == 8


def test_every_plot_is_a_real_png(finished):
    out, _ = finished
    for name in ("verdicts_sample-test.png", "metrics_vs_k_sample-test.png", "sheet_sample-test.png"):
        with Image.open(out / "plots" / name) as img:
            assert img.format == "PNG" and img.width > 800 and img.height > 200
            assert len(np.unique(np.asarray(img.convert("L")))) > 50
    for run in ("target-only/seed0", "aligned@k48/seed1"):
        for name in ("loss_phase1.png", "loss_phase2.png", "samples_phase1.png", "samples_phase2.png"):
            assert (out / "runs" / run / name).stat().st_size > 5000


def test_a_rerun_reuses_and_a_lost_stage_is_redone_alone(finished):
    out, _ = finished
    ckpt = out / "runs" / "as-is" / "seed1" / "checkpoints" / "latest.pth"
    before = ckpt.stat().st_mtime_ns
    lost_scores = out / "runs" / "aligned@k24" / "seed0" / "scores" / "sample-test.csv"
    lost_image = out / "runs" / "aligned@k24" / "seed0" / "fused" / "sample-test" / "FLIR_08094.png"
    kept_image = lost_image.with_name("FLIR_04722.png")
    kept_time = kept_image.stat().st_mtime_ns
    lost_scores.unlink()
    lost_image.unlink()
    log = _run("--out", str(out))
    assert "aligning" not in log and "packing" not in log and log.count("reusing") == 4
    assert log.count("continuing") == 8 and ckpt.stat().st_mtime_ns == before  # nothing retrained
    assert lost_scores.exists() and lost_image.exists() and kept_image.stat().st_mtime_ns == kept_time
    assert log.count("fuse sample-test") == 1


def test_only_and_another_spec(finished, tmp_path):
    out = tmp_path / "one"
    log = _run("--out", str(out), "--only", "target-only")
    assert "train target-only seed 1" in log and "as-is" not in log.split("baseline")[-1]
    md = (out / "results.md").read_text()
    assert "Not yet scored" in md and "as-is seed 0 on sample-test" in md
    other = tmp_path / "other.toml"
    other.write_text(open(SMOKE).read().replace("seeds = [0, 1]", "seeds = [0]"))
    r = CliRunner().invoke(main, ["experiment", str(other), "--out", str(out), "-q"])
    assert r.exit_code == 1 and "made with another spec" in r.output
    r = CliRunner().invoke(main, ["experiment", SMOKE, "--out", str(out), "--only", "nope"])
    assert r.exit_code == 1 and "no variant 'nope'" in r.output


def _start(out, *args):
    import subprocess
    import sys

    code = "from crossfuse.cli.main import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, "experiment", SMOKE, "--out", str(out), "-q", "-j", "1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_processes_share_a_folder_and_a_killed_one_continues(tmp_path):
    import signal
    import time

    out = tmp_path / "shared"
    # Two processes at once, both needing the target corpus: one builds it, the other waits for it.
    a, b = _start(out, "--only", "target-only"), _start(out, "--only", "as-is")
    ckpt = out / "runs" / "target-only" / "seed0" / "checkpoints" / "epoch_0001.pth"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and a.poll() is None:
        time.sleep(0.2)
    a.send_signal(signal.SIGKILL)  # killed in the middle of target-only's first training
    a.wait()
    log_b = b.communicate(timeout=600)[0]
    assert b.returncode == 0, log_b
    assert ckpt.exists()
    log_a = _run("--out", str(out), "--only", "target-only")
    assert "continuing in" in log_a and "reusing" in log_a and "packing" not in log_a
    md = (out / "results.md").read_text()
    assert "| target-only | 2 |" in md and "| as-is | 2 |" in md
    assert "aligned@k24 seed 0 on sample-test" in md  # not run by either: listed as not yet scored
    assert not list(out.rglob("*.tmp"))
