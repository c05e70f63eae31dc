"""Leaderboards: several methods on the same pairs, means and ranks in each metric's direction,
CSV/JSON/Markdown; on VIFB's own fused images, whose means agree with VIFB's printed values."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from collections import defaultdict

import numpy as np
import pytest

from crossfuse.errors import EvalError
from crossfuse.fusion import leaderboard as lb
from crossfuse.fusion.evaluate import Row
from tests.fusion.test_vifb import ORACLE, needs_oracle
from tests.helpers import REPO


def test_ranks_follow_each_metrics_direction_and_ties_share_the_better_rank():
    def rows(**metrics):
        return [Row(dataset="d", name="x", metrics=metrics)]

    b = lb.board({"a": rows(EN=7.0, MSE=0.05, **{"vifb:Qcv": 300.0}),
                  "b": rows(EN=6.0, MSE=0.04, **{"vifb:Qcv": 300.0}),
                  "c": rows(EN=7.0, MSE=0.06, **{"vifb:Qcv": 100.0})})
    assert b.ranks["a"] == {"EN": 1, "MSE": 2, "vifb:Qcv": 2}
    assert b.ranks["b"] == {"EN": 3, "MSE": 1, "vifb:Qcv": 2}
    assert b.ranks["c"] == {"EN": 1, "MSE": 3, "vifb:Qcv": 1}
    md = lb.markdown(b).splitlines()
    assert md[0] == "| method | EN ↑ | MSE ↓ | vifb:Qcv ↓ | mean rank |" and len(md) == 5
    # a and c tie on mean rank (5/3): the order given decides; b (7/3) comes last.
    assert md[2] == "| a | 7.0000 (1) | 0.0500 (2) | 300.0000 (2) | 1.67 |"
    assert md[3].startswith("| c | 7.0000 (1) | 0.0600 (3) | 100.0000 (1) |") and md[4].startswith("| b |")


def test_which_folders_are_leaderboards(tmp_path):
    (tmp_path / "m1").mkdir()
    (tmp_path / "m0").mkdir()
    assert lb.methods(str(tmp_path)) == [("m0", str(tmp_path / "m0")), ("m1", str(tmp_path / "m1"))]
    (tmp_path / "x.png").write_bytes(b"")
    assert lb.methods(str(tmp_path)) is None  # images of its own: one method's folder
    assert lb.methods(str(tmp_path / "m0")) is None  # empty: scoring it names what it misses
    with pytest.raises(EvalError, match="is not a folder"):
        lb.methods(str(tmp_path / "nowhere"))


@needs_oracle
def test_a_leaderboard_of_three_vifb_methods_through_the_cli(tmp_path):
    from click.testing import CliRunner

    from crossfuse import manifest
    from crossfuse.cli.main import main

    whole = manifest.load(str(REPO / "data_manifests" / "vifb.json"))
    three = dataclasses.replace(whole, pairs=whole.pairs[:3])
    spec = tmp_path / "three.json"
    manifest.write(three, str(spec))
    board = tmp_path / "board"
    methods = ("ADF", "CBF", "GFF")
    for method in methods:
        (board / method).mkdir(parents=True)
        for p in three.pairs:
            shutil.copy(ORACLE / "fused" / method / f"{p.id}.jpg", board / method / f"{p.id}.jpg")
    out = {k: tmp_path / f"b.{k}" for k in ("csv", "json", "md")}
    r = CliRunner().invoke(main, ["eval", "--fused", str(board), "--pairs", str(spec), "--protocol", "vifb", "-q",
                                  "--csv", str(out["csv"]), "--json", str(out["json"]), "--markdown", str(out["md"])])
    assert r.exit_code == 0, r.output
    doc = json.loads(out["json"].read_text())
    printed: dict[tuple[str, str], list[float]] = defaultdict(list)
    with open(ORACLE / "values.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["method"] in methods and row["image"] in {p.id for p in three.pairs}:
                printed[(row["method"], row["metric"])].append(float(row["value"]))
    from crossfuse.fusion.metrics import vifb

    for method in methods:
        for ours, theirs in vifb.FUNCTIONS.items():
            assert doc["methods"][method]["means"][ours] == pytest.approx(np.mean(printed[(method, theirs)]),
                                                                          rel=1e-4, abs=1e-4)
    for metric in ("RMSE", "SSIM"):
        best = min(methods, key=lambda m: doc["methods"][m]["ranks"][metric])
        pick = min if metric == "RMSE" else max
        assert best == pick(methods, key=lambda m: doc["methods"][m]["means"][metric])
    assert doc["better"]["RMSE"] == "smaller" and doc["better"]["SSIM"] == "larger"
    lines = list(csv.DictReader(open(out["csv"])))
    assert len(lines) == 9 and {row["method"] for row in lines} == set(methods)
    md = out["md"].read_text().splitlines()
    assert len(md) == 5 and md[0].startswith("| method | AG ↑ | CE ↓")
    assert "mean rank" in r.output and all(m in r.output for m in methods)


def test_a_nan_mean_is_unranked_and_the_json_stays_strict(tmp_path):
    """Tang's toolbox keeps MATLAB's 0 / 0: a fused image equal to its visible source has SCD NaN
    (corr2 of a zero image). That method is unranked on SCD (not tied first), its mean rank is over
    the metrics it has, and --json writes null, not Python's NaN, which strict readers refuse."""
    from PIL import Image

    from crossfuse.fusion.metrics.common import read_stored

    sample = REPO / "data_manifests" / "sample" / "roadscene"
    stems = ("FLIR_00006", "FLIR_01945")
    for sub, kind in (("src/ir", "ir"), ("src/vi", "vis"), ("fused/copy", "vis")):
        (tmp_path / sub).mkdir(parents=True)
        for s in stems:
            shutil.copy(sample / kind / f"{s}.jpg", tmp_path / sub / f"{s}.jpg")
    (tmp_path / "fused" / "mean").mkdir()
    for s in stems:
        ir, vis = (read_stored(str(sample / k / f"{s}.jpg")).astype(np.int64) for k in ("ir", "vis"))
        mean = (vis + (ir if ir.ndim == 3 else ir[..., None]) + 1) // 2
        Image.fromarray(mean.astype(np.uint8)).save(tmp_path / "fused" / "mean" / f"{s}.png")
    from click.testing import CliRunner

    from crossfuse.cli.main import main

    r = CliRunner().invoke(main, ["eval", "--protocol", "tang", "--fused", str(tmp_path / "fused"), "--pairs",
                                  str(tmp_path / "src"), "--json", str(tmp_path / "b.json"), "--markdown",
                                  str(tmp_path / "b.md"), "-q"])
    assert r.exit_code == 0, r.output

    def refuse(constant):
        raise ValueError(constant)

    doc = json.loads((tmp_path / "b.json").read_text(), parse_constant=refuse)
    copy, mean = doc["methods"]["copy"], doc["methods"]["mean"]
    assert copy["means"]["SCD"] is None and copy["ranks"]["SCD"] is None and mean["ranks"]["SCD"] == 1
    ranked = [v for v in copy["ranks"].values() if v is not None]
    assert len(ranked) == 10 and copy["mean_rank"] == pytest.approx(sum(ranked) / 10)
    assert "| nan (-) |" in (tmp_path / "b.md").read_text() and "nan (-)" in r.output


def test_an_empty_method_folder_under_skip_missing_is_named(tmp_path):
    """Issue 30 WEAK: it said "the given pairs list no images", naming neither method nor folder."""
    from click.testing import CliRunner

    from crossfuse.cli.main import main
    from tests.helpers import SAMPLE_TARGET

    (tmp_path / "board" / "empty").mkdir(parents=True)
    (tmp_path / "board" / "other").mkdir()
    r = CliRunner().invoke(main, ["eval", "--fused", str(tmp_path / "board"), "--pairs", str(SAMPLE_TARGET),
                                  "--skip-missing", "-q"])
    assert r.exit_code == 1 and "nothing is left to score in" in r.output and "board/" in r.output
