"""``crossfuse-align report`` on real corpora of the sample: every figure a valid PNG of a
sensible size, the page links them and states W1; a report of a corpus whose sources moved."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from crossfuse.cli.align import main


def _check_figures(out, names):
    page = (out / "index.html").read_text()
    for name in names:
        with Image.open(out / name) as img:
            img.verify()
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.width >= 400 and img.height >= 300, (name, img.size)
            assert len(np.unique(np.asarray(img.convert("L")))) > 20  # drawn, not blank
        assert f'src="{name}"' in page
    return page


def test_report_of_an_aligned_corpus(sample_corpus, tmp_path):
    url, summary = sample_corpus
    r = CliRunner().invoke(main, ["report", url, "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    page = _check_figures(tmp_path / "rep", ["distributions.png", "clouds.png", "gamma.png", "patches.png"])
    w1 = summary.record.w1
    assert "W1" in page and f"{w1.after[0]:.2f}" in page and f"{w1.pool[2]:.2f}" in page
    assert "source\nunreadable" not in page


def test_report_of_a_packed_corpus_and_of_moved_sources(tmp_path, sample_corpus, sample_target, sample_params, engine):
    from crossfuse.align import pack
    from crossfuse.align.report import write

    url = str(tmp_path / "p.zarr")
    pack(dataset=sample_target, out=url, params=sample_params, engine=engine)
    report = write(url, str(tmp_path / "packed"))
    assert [os.path.basename(f) for f in report.figures] == ["distributions.png", "clouds.png", "patches.png"]
    page = _check_figures(tmp_path / "packed", ["distributions.png", "clouds.png", "patches.png"])
    assert "W1" not in page
    # Sources elsewhere: the report is still written, the "before" cells say so.
    moved = write(sample_corpus[0], str(tmp_path / "moved"), root=str(tmp_path / "nowhere"))
    assert len(moved.figures) == 4


def test_report_of_a_missing_store_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(main, ["report", str(tmp_path / "none.zarr"), "--out", str(tmp_path / "r")])
    assert r.exit_code != 0 and "none.zarr" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("command", ["build", "inspect"])
def test_build_and_inspect_print_w1(command, sample_corpus, sample_target, sample_aux, tmp_path):
    from tests.helpers import SAMPLE_AUX, SAMPLE_TARGET

    if command == "inspect":
        args = ["inspect", sample_corpus[0]]
    else:
        args = ["build", "--target", str(SAMPLE_TARGET), "--aux", str(SAMPLE_AUX), "--out", str(tmp_path / "b.zarr"),
                "-k", "50", "-s", "96", "-q", "--workers", "1"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "W1 to target" in r.output
    assert re.search(r"after gamma +R +\d+\.\d\d", r.output.split("W1 to target")[1])


@pytest.mark.parametrize("flags,says,has_gamma_png,never", [
    (["--transform", "none"], ["Top-24 by L1 distance of RGB means (flat index); not transformed"], False,
     ["gamma:", "gamma 1.0", "after none"]),
    (["--transform", "cdf"], ["histogram-matched", "lookup tables: histogram matching"], True, ["gamma:"]),
    (["--select", "random", "--select-seed", "3"], ["24 drawn at random (seed 3)", "gamma:"], True, ["Top-24"]),
    (["--descriptor", "luma"], ["Top-24 by L1 distance of luma mean and sd"], True, ["RGB means"]),
])
def test_report_says_what_each_alignment_did(flags, says, has_gamma_png, never, tmp_path, sample_target, sample_aux):
    """Issue 30: the report printed 'Top-K by L1' and 'gamma: 1.0000' whatever the corpus did, and
    drew identity 'gamma' curves for --transform none. An old gamma.png is removed on a rewrite."""
    store, out = tmp_path / "c.zarr", tmp_path / "rep"
    r = CliRunner().invoke(main, ["build", "--target", sample_target.origin, "--aux", sample_aux.origin, "--out",
                                  str(store), "-k", "24", "-q", *flags])
    assert r.exit_code == 0, r.output
    out.mkdir()
    (out / "gamma.png").write_bytes(b"an earlier report's")
    (out / "index.html").write_text('<meta name="generator" content="crossfuse-align report">')
    r = CliRunner().invoke(main, ["report", str(store), "--out", str(out)])
    assert r.exit_code == 0, r.output
    page = re.sub(r"<[^>]+>", " ", (out / "index.html").read_text())
    for words in says:
        assert words in page, (words, page[:600])
    for words in never:
        assert words not in page, words
    assert (out / "gamma.png").exists() == has_gamma_png and ('src="gamma.png"' in (out / "index.html").read_text()) \
        == has_gamma_png
