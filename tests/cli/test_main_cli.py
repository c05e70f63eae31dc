"""``crossfuse train`` and ``crossfuse fuse`` through CliRunner, on the session's sample corpus."""


from click.testing import CliRunner
from PIL import Image

from crossfuse.cli.main import main
from tests.helpers import REPO, SAMPLE_TARGET

DEMO = str(REPO / "configs" / "demo.toml")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_resume_and_fuse(tmp_path, sample_corpus):
    run = tmp_path / "run"
    r = _run("train", "--data", sample_corpus[0], "--out", run, "--config", DEMO, "--epochs", "2",
             "--phase1-epochs", "1", "--steps-per-epoch", "2", "-q")
    assert r.exit_code == 0, r.output
    assert "trained 2 epochs (4 steps)" in r.output
    assert 'steps_per_epoch = 2' in (run / "config.toml").read_text()
    r = _run("train", "--data", sample_corpus[0], "--out", run, "-q")
    assert r.exit_code == 1 and "--resume" in r.output
    r = _run("train", "--data", sample_corpus[0], "--out", run, "--resume", "-q")  # nothing left to do
    assert r.exit_code == 0 and len((run / "log.jsonl").read_text().splitlines()) == 4
    out = tmp_path / "fused"
    r = _run("fuse", "-k", run / "checkpoints" / "latest.pth", "-p", SAMPLE_TARGET, "-o", out, "-q")
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*.png"))) == 8 and Image.open(next(out.glob("*.png"))).mode == "RGB"
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    r = _run("fuse", "-k", run / "checkpoints" / "latest.pth", "-p", SAMPLE_TARGET, "-o", out, "--gray", "-q")
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before  # nothing lost
    r = _run("fuse", "-k", run / "checkpoints" / "latest.pth", "-p", SAMPLE_TARGET, "-o", tmp_path / "g",
             "--gray", "--tile", "128", "--overlap", "16", "-q")
    assert r.exit_code == 0 and Image.open(next((tmp_path / "g").glob("*.png"))).mode == "L"


def test_clear_errors(tmp_path, sample_corpus):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 3\n")
    r = _run("train", "--data", sample_corpus[0], "--out", tmp_path / "r", "--config", bad)
    assert r.exit_code == 1 and "unknown key(s) ['epochz']" in r.output
    r = _run("train", "--data", tmp_path / "nothing.zarr", "--out", tmp_path / "r")
    assert r.exit_code == 1 and "no Zarr group" in r.output
    r = _run("fuse", "-k", tmp_path / "none.pth", "-p", SAMPLE_TARGET, "-o", tmp_path / "o")
    assert r.exit_code == 1 and "does not exist" in r.output
    r = _run("train", "--data", sample_corpus[0], "--weight", "1", "--weight", "2", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "one --weight per --data" in r.output


def test_help_teaches():
    r = _run("train", "--help")
    assert r.exit_code == 0 and "--resume" in r.output and "torchrun" in r.output
