"""``crossfuse eval`` on the bundled metric records."""

import csv
import json
import shutil

import pytest
from click.testing import CliRunner
from PIL import Image

from crossfuse.cli.main import main
from tests.helpers import MANIFESTS

BUNDLED = MANIFESTS / "sample" / "metrics"


@pytest.fixture
def fused_dir(tmp_path):
    """The bundled max fusion, named after its pair."""
    out = tmp_path / "fused"
    out.mkdir()
    shutil.copy(BUNDLED / "fused" / "RoadScene_FLIR_00211_max.png", out / "FLIR_00211.png")
    return out


def _pairs(tmp_path):
    for side in ("ir", "vis"):
        (tmp_path / "pairs" / side).mkdir(parents=True, exist_ok=True)
        shutil.copy(BUNDLED / side / "FLIR_00211.jpg", tmp_path / "pairs" / side)
    return tmp_path / "pairs"


def test_table_csv_and_json(tmp_path, fused_dir):
    pairs = _pairs(tmp_path)
    r = CliRunner().invoke(main, ["eval", "--fused", str(fused_dir), "--pairs", str(pairs), "--csv",
                                  str(tmp_path / "m.csv"), "--json", str(tmp_path / "m.json"), "-j", "1", "-q"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split() == ["name", "EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", "MSE"]
    assert lines[2].startswith("FLIR_00211") and lines[-1].startswith("mean pairs")
    assert len({len(line) for line in lines if not line.startswith("-")}) == 1  # aligned columns
    rows = list(csv.reader(open(tmp_path / "m.csv")))
    assert ",".join(rows[0]) == "dataset,name,EN,SD,SF,AG,MI,SCD,VIF,Qabf,SSIM,CC,PSNR,MSE"
    assert rows[1][:2] == ["pairs", "FLIR_00211"] and rows[2][:2] == ["pairs", "mean"] and len(rows) == 3
    expected = [r for r in json.loads((BUNDLED / "metrics_reference.json").read_text()) if r["rule"] == "max"][0]
    got = dict(zip(rows[0][2:], map(float, rows[1][2:])))
    assert all(got[k] == pytest.approx(v, rel=1e-4) for k, v in expected["metrics"].items())
    assert json.loads((tmp_path / "m.json").read_text())["means"]["pairs"]["EN"] == pytest.approx(got["EN"])
    assert float(rows[2][2]) == pytest.approx(got["EN"])
    # an existing score file is not replaced without --overwrite, and nothing is scored first
    before = (tmp_path / "m.csv").read_bytes()
    args = ["eval", "-f", str(fused_dir), "--pairs", str(pairs), "--csv", str(tmp_path / "m.csv"), "-j", "1", "-q"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "m.csv already exist" in r.output and "--overwrite" in r.output
    assert (tmp_path / "m.csv").read_bytes() == before
    (tmp_path / "m.csv").write_text("stale")
    r = CliRunner().invoke(main, args + ["--overwrite"])
    again = list(csv.reader(open(tmp_path / "m.csv")))
    assert r.exit_code == 0 and again[0] == rows[0] and len(again) == len(rows)  # replaced with the scores
    assert all(float(a) == pytest.approx(float(b), rel=1e-9) for a, b in zip(again[1][2:], rows[1][2:]))


def test_missing_and_missized_fused_images_are_named(tmp_path, fused_dir):
    pairs = _pairs(tmp_path)
    (fused_dir / "FLIR_00211.png").rename(fused_dir / "other.png")
    r = CliRunner().invoke(main, ["eval", "--fused", str(fused_dir), "--pairs", str(pairs), "-q"])
    assert r.exit_code == 1 and "no fused image for 1 of" in r.output and ": FLIR_00211 (" in r.output, r.output
    Image.open(fused_dir / "other.png").crop((0, 0, 100, 100)).save(fused_dir / "FLIR_00211.png")
    r = CliRunner().invoke(main, ["eval", "--fused", str(fused_dir), "--pairs", str(pairs), "-j", "2", "-q"])
    assert r.exit_code == 1 and "100x100 but its sources" in r.output
