"""Identical runs are trained once: a variant whose corpora hold the same patches in the same
chunks as an earlier variant's, with the same weights, settings and seed, reuses that run. The
test checks the premise too: trained on its own, the second variant scores exactly the same."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from crossfuse.cli.main import main
from crossfuse.experiment import reuse
from crossfuse.experiment.layout import Layout
from crossfuse.experiment.spec import load
from tests.helpers import REPO

pytestmark = pytest.mark.slow
MANIFESTS = REPO / "data_manifests"
SPEC = f"""
name = "reuse"
seeds = [0]
patch = 64
stride = 96
chunk = 32
sheet_pairs = 1

[train]
epochs = 2
phase1_epochs = 1
batch_size = 4
steps_per_epoch = 2
lr = 1e-3
lr_step = 1

[train.network]
dim = 8
heads = 2
encoder_blocks = 1
decoder_blocks = 1
detail_nodes = 1

[corpora.target]
pack = "{MANIFESTS / 'sample-target-train.json'}"

[corpora.aux]
pack = "{MANIFESTS / 'sample-aux.json'}"

[corpora.aux-again]
pack = "{MANIFESTS / 'sample-aux.json'}"

[variants.as-is]
corpora = ["target", "aux"]

[variants.as-is-again]
corpora = ["target", "aux-again"]

[variants.weighted]
corpora = ["target", "aux-again"]
weights = [1, 2]

[tests.sample-test]
pairs = "{MANIFESTS / 'sample-target-test.json'}"
"""


def _run(spec, out, *args):
    r = CliRunner().invoke(main, ["experiment", str(spec), "--out", str(out), "-q", "-j", "2", *args])
    assert r.exit_code == 0, r.output
    return r.output


def test_an_identical_run_is_reused_and_would_have_scored_the_same(tmp_path):
    spec = tmp_path / "reuse.toml"
    spec.write_text(SPEC)
    log = _run(spec, tmp_path / "a")
    layout = Layout(root=str(tmp_path / "a"))
    assert "train as-is-again seed 0: trains on exactly what as-is does" in log
    note = json.loads((tmp_path / "a" / "runs" / "as-is-again" / "seed0" / reuse.NOTE).read_text())
    assert note["reused"].endswith("as-is/seed0")
    assert not (tmp_path / "a" / "runs" / "as-is-again" / "seed0" / "checkpoints").exists()
    # Other weights are other training: trained, not reused.
    assert "train weighted seed 0: starting" in log and not (tmp_path / "a" / "runs" / "weighted" / "seed0" /
                                                            reuse.NOTE).exists()
    reused = (tmp_path / "a" / "runs" / "as-is-again" / "seed0" / "scores" / "sample-test.csv").read_text()
    # The premise: trained on its own (nothing to reuse in a fresh folder), it scores exactly the same.
    _run(spec, tmp_path / "b", "--only", "as-is-again")
    assert (tmp_path / "b" / "runs" / "as-is-again" / "seed0" / "checkpoints").exists()
    assert (tmp_path / "b" / "runs" / "as-is-again" / "seed0" / "scores" / "sample-test.csv").read_text() == reused
    # A rerun keeps the reuse, and the results hold the reused variant like any other.
    assert "as-is-again" not in _run(spec, tmp_path / "a").split("results:")[0]
    md = (tmp_path / "a" / "results.md").read_text()
    assert "| as-is-again |" in md and "- as-is-again seed 0: the run of as-is (" in md
    # The digest sees the seed and the weights.
    s = load(str(spec))
    again = s.variants["as-is-again"]
    digest = reuse.inputs_digest(again, 0, layout)
    assert digest == reuse.inputs_digest(s.variants["as-is"], 0, layout)
    assert digest != reuse.inputs_digest(again, 1, layout)
    assert digest != reuse.inputs_digest(dataclasses.replace(again, weights=(1.0, 2.0)), 0, layout)
    # Issue 30: a reused run whose scores were deleted is scored again (reused anew), and a damaged
    # note is named in one line instead of a JSON traceback.
    scores = tmp_path / "a" / "runs" / "as-is-again" / "seed0" / "scores" / "sample-test.csv"
    scores.unlink()
    _run(spec, tmp_path / "a")
    assert scores.read_text() == reused
    (tmp_path / "a" / "runs" / "as-is-again" / "seed0" / reuse.NOTE).write_text("{not json")
    r = CliRunner().invoke(main, ["experiment", str(spec), "--out", str(tmp_path / "a"), "-q", "-j", "2"])
    assert r.exit_code == 1 and "reused.json is damaged" in r.output and "Traceback" not in r.output
