"""``crossfuse-align`` through click's CliRunner and as a real subprocess."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from crossfuse.cli.align import main
from crossfuse.schema import ARRAYS, PARTIAL_GROUP
from tests.helpers import SAMPLE_AUX, SAMPLE_TARGET

BUILD = ["build", "-t", str(SAMPLE_TARGET), "-a", str(SAMPLE_AUX), "-k", "120", "--stride", "64", "--chunk", "8",
         "-j", "2", "-q"]


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_build_inspect_verify(tmp_path):
    out = tmp_path / "c.zarr"
    r = _run(*BUILD, "-o", out)
    assert r.exit_code == 0, r.output
    assert "selected        120 patches" in r.output and "gamma          R" in r.output
    r = _run("inspect", out)
    assert r.exit_code == 0 and "aligned corpus, schema 1" in r.output and "(120, 3, 64, 64)" in r.output
    assert "over an exact flat FAISS index" in r.output and "from 12 source pairs" in r.output
    d = json.loads(_run("inspect", out, "--json").output)
    assert d["counts"]["patches"] == 120 and d["params"]["k"] == 120 and d["arrays"]["vis"]["chunks"][0] == 8
    attrs = zarr.open_group(str(out), mode="r").attrs["crossfuse"]
    assert d["sources"] == attrs["sources"] and len(d["sources"]) == 12  # the list, as stored
    assert d["fingerprint"] == attrs["fingerprint"] and len(d["gamma_reachable"]) == 3
    r = _run("verify", out)
    assert r.exit_code == 0 and "15 chunks read back, 24 source files checked\n" in r.output
    r = _run(*BUILD, "-o", out)
    assert r.exit_code == 1 and "already holds a complete corpus; pass --overwrite" in r.output
    assert "Traceback" not in r.output


def test_verify_finds_a_damaged_chunk(tmp_path):
    out = tmp_path / "c.zarr"
    assert _run(*BUILD, "-o", out).exit_code == 0
    chunk = next((out / "vis" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.write_bytes(b"garbage")
    r = _run("verify", out, "--no-sources")
    assert r.exit_code == 1 and "cannot be read" in r.output


def test_verify_says_when_sources_could_not_be_checked(tmp_path):
    out = tmp_path / "c.zarr"
    assert _run(*BUILD, "-o", out).exit_code == 0
    elsewhere = tmp_path / "nowhere"
    elsewhere.mkdir()
    r = _run("verify", out, "--root", elsewhere)
    assert r.exit_code == 1 and "0 source files checked, 24 unreachable" in r.output
    assert "were not checked" in r.output and "--no-sources" in r.output and "  OK" not in r.output
    r = _run("verify", out, "--no-sources")
    assert r.exit_code == 0 and "source files not checked (--no-sources)" in r.output and "OK" in r.output


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_without_engine_noise(tmp_path):
    """SIGINT during a real build: one line saying how to resume, no Dask cancellation warnings or
    traceback, exit status 130; the same command then finishes the build."""
    out = tmp_path / "int.zarr"
    cmd = [sys.executable, "-m", "crossfuse.cli.align", *BUILD[:-3], "-j", "1", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not (out / PARTIAL_GROUP).exists():
        time.sleep(0.005)
    time.sleep(0.3)  # into the scan
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the build finished before it could be interrupted")
    # 130, or death by SIGINT when the interrupt lands during interpreter start-up or shutdown: a shell
    # reports both as status 130
    assert proc.returncode in (130, -signal.SIGINT), stderr
    assert "rerun the same command to resume" in stderr
    for noise in ("Traceback", "CancelledError", "cancelled", "Aborted!"):
        assert noise not in stderr, stderr
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_pack_labels_its_scan_by_dataset(tmp_path):
    r = CliRunner().invoke(main, ["pack", "-m", str(SAMPLE_TARGET), "-o", str(tmp_path / "p.zarr"),
                                                  "-s", "200"])
    assert r.exit_code == 0, r.output
    assert "scan (sample-roadscene)" in r.stderr and "scan aux" not in r.stderr


def test_clear_errors(tmp_path):
    r = _run("build", "-t", tmp_path / "none.json", "-a", SAMPLE_AUX, "-o", tmp_path / "x.zarr")
    assert r.exit_code == 1 and "none.json does not exist" in r.output
    r = _run("inspect", tmp_path)
    assert r.exit_code == 1 and "Error:" in r.output and "Traceback" not in r.output
    r = _run(*BUILD[:-1], "-k", "100000", "-o", tmp_path / "y.zarr")
    assert r.exit_code == 1 and "lower -k to at most 752" in r.output


def test_pack_and_manifest_commands(tmp_path):
    m = tmp_path / "m.json"
    r = _run("manifest", SAMPLE_TARGET.parent / "sample" / "roadscene", "-o", m, "--name", "rs")
    assert r.exit_code == 0, r.output
    doc = json.loads(m.read_text())
    assert doc["name"] == "rs" and len(doc["pairs"]) == 8 and len(doc["pairs"][0]["sha256"]["vis"]) == 64
    r = _run("pack", "-m", m, "-o", tmp_path / "p.zarr", "--stride", "100", "-q")
    assert r.exit_code == 0 and "packed          8 pairs" in r.output
    assert _run("manifest", SAMPLE_TARGET.parent / "sample" / "roadscene", "-o", m).exit_code == 1


@pytest.mark.slow
def test_killed_build_resumes_to_the_same_arrays(tmp_path):
    cmd = [sys.executable, "-m", "crossfuse.cli.align", *BUILD[:-3], "-j", "1", "-q"]
    whole, killed = tmp_path / "whole.zarr", tmp_path / "killed.zarr"
    subprocess.run([*cmd, "-o", str(whole)], check=True, capture_output=True)
    proc = subprocess.Popen([*cmd, "-o", str(killed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = killed / PARTIAL_GROUP / "zarr.json"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and '"written"' in partial.read_text():
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.returncode == 0:
        pytest.skip("the build finished before it could be killed")
    meta = json.loads((killed / "zarr.json").read_text())["attributes"]["crossfuse"]
    assert meta["complete"] is False
    r = subprocess.run([*cmd, "-o", str(killed)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resumed and completed" in r.stdout
    a, b = zarr.open_group(str(whole), mode="r"), zarr.open_group(str(killed), mode="r")
    assert all(np.array_equal(a[n][...], b[n][...]) for n in ARRAYS)


def test_help_teaches():
    r = _run("build", "--help")
    assert r.exit_code == 0 and "--skip-bad" in r.output and "Top-K" in r.output and "--scheduler" in r.output
    text = " ".join(r.output.split())
    for choice in ("gamma:", "none:", "cdf:", "topk:", "random:", "match:"):  # every choice is explained
        assert choice in text, choice


def test_inspect_says_what_was_done_and_when_a_gamma_is_unreachable(tmp_path):
    """Issue 30: inspect said "Top-K ... FAISS" for --select match/random, and printed an
    unreachable gamma (an all-black channel) as if it had been applied."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "black"
    (root / "ir").mkdir(parents=True)
    (root / "vis").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (200, 260), dtype=np.uint8)).save(root / "ir" / f"{i}.png")
        vis = rng.integers(0, 255, (200, 260, 3), dtype=np.uint8)
        vis[..., 2] = 0  # blue all black: no gamma can reach the target's blue
        Image.fromarray(vis).save(root / "vis" / f"{i}.png")
    from crossfuse.cli.align import main as align_main

    target = str(SAMPLE_TARGET)
    for select in ("topk", "match"):
        out = str(tmp_path / f"{select}.zarr")
        r = CliRunner().invoke(align_main, ["build", "--target", target, "--aux", str(root), "--out", out, "-k", "4",
                                            "--stride", "64", "--select", select, "-q"])
        assert r.exit_code == 0, r.output
        shown = CliRunner().invoke(align_main, ["inspect", out]).output
        assert "unreachable    B:" in shown
        assert ("Top-4 by" in shown) == (select == "topk") and ("--select match" in shown) == (select == "match")
