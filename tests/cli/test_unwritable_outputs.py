"""Issue 30 (WEAK): an output under a parent that is a regular file, or on a read-only file
system, is one line naming the path and what to do, never a traceback, and nothing is left."""

from __future__ import annotations

import errno
import os

import pytest
from click.testing import CliRunner

from crossfuse.cli.align import main as align_main
from crossfuse.cli.main import main
from tests.helpers import REPO

TEST_PAIRS = str(REPO / "data_manifests" / "sample-target-test.json")


@pytest.fixture
def blocker(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a folder")
    return path


def _refused(cli, args, blocker):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)
    assert f"{blocker} is a file" in r.output, r.output
    assert sorted(os.listdir(blocker.parent)) == ["file"] and blocker.read_text() == "not a folder"


def test_align_writers_under_a_file(sample_corpus, blocker):
    store, _ = sample_corpus
    _refused(align_main, ["report", store, "--out", str(blocker / "report")], blocker)
    _refused(align_main, ["pack", "-m", TEST_PAIRS, "--out", str(blocker / "x.zarr")], blocker)


def test_train_and_fuse_under_a_file(sample_corpus, blocker, tmp_path):
    store, _ = sample_corpus
    _refused(main, ["train", "-d", store, "--out", str(blocker / "run"), "--epochs", "1", "--phase1-epochs", "0",
                    "--steps-per-epoch", "1", "--device", "cpu"], blocker)
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "-d", store, "--out", str(run), "--epochs", "1", "--phase1-epochs", "0",
                                  "--steps-per-epoch", "1", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["fuse", "--checkpoint", str(run), "--pairs", TEST_PAIRS, "--out",
                                  str(blocker / "fused")])
    assert r.exit_code == 1 and f"{blocker} is a file" in r.output and "Traceback" not in r.output, r.output


def test_read_only_file_system_is_one_line(sample_corpus, tmp_path, monkeypatch):
    store, _ = sample_corpus

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(os, "makedirs", read_only)
    monkeypatch.setattr(os, "mkdir", read_only)
    r = CliRunner().invoke(align_main, ["report", store, "--out", str(tmp_path / "report")])
    assert r.exit_code == 1 and "read-only" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "report").exists()
