"""Issue 30 FAIL 7: a rerun notices manifests that changed since a corpus was built or a test set
was scored (a pair dropped), and refuses, naming them, instead of reusing stale results."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from crossfuse.cli.main import main
from tests.helpers import MANIFESTS

pytestmark = pytest.mark.slow


def _manifest(src: str, dst, keep: int | None = None) -> None:
    doc = json.loads((MANIFESTS / src).read_text())
    doc["root"] = str((MANIFESTS / doc["root"]).resolve())
    if keep is not None:
        doc["pairs"] = doc["pairs"][:keep]
    dst.write_text(json.dumps(doc))


def test_a_dropped_pair_is_noticed_in_a_corpus_and_in_a_test_set(tmp_path):
    _manifest("sample-target-train.json", tmp_path / "train.json")
    _manifest("sample-target-test.json", tmp_path / "test.json")
    spec = tmp_path / "spec.toml"
    spec.write_text('''
seeds = [0]
patch = 64
stride = 128
chunk = 32
[train]
epochs = 1
phase1_epochs = 0
batch_size = 4
steps_per_epoch = 2
[train.network]
dim = 8
heads = 2
encoder_blocks = 1
decoder_blocks = 1
detail_nodes = 1
[corpora.target]
pack = "train.json"
[variants.only]
corpora = ["target"]
[tests.t]
pairs = "test.json"
''')
    out = str(tmp_path / "exp")

    def run():
        return CliRunner().invoke(main, ["experiment", str(spec), "--out", out, "-q", "-j", "1"])

    assert run().exit_code == 0
    assert run().exit_code == 0  # unchanged: everything reused
    _manifest("sample-target-test.json", tmp_path / "test.json", keep=1)  # a test pair dropped
    r = run()
    assert r.exit_code == 1 and "scores other images than test set t" in r.output and "no longer listed" in r.output
    _manifest("sample-target-test.json", tmp_path / "test.json")
    _manifest("sample-target-train.json", tmp_path / "train.json", keep=3)  # a corpus pair dropped
    r = run()
    assert r.exit_code == 1 and "corpus target" in r.output and "was built from other inputs" in r.output
    assert "Traceback" not in r.output
