"""Issue 30 (WEAK): unreachable or unknown remote locations and absurdly nested metadata are one
line each, never a traceback, and nothing is left behind."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from crossfuse.cli.align import main as align_main
from crossfuse.cli.main import main
from tests.helpers import REPO

PAIRS = str(REPO / "data_manifests" / "sample-target-test.json")


def _one_line(cli, args, *words):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output and r.output.count("\n") <= 2, r.output
    for w in words:
        assert w in r.output, (w, r.output)
    return r.output


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_closed_port_and_unknown_protocol(closed_port):
    _one_line(align_main, ["inspect", f"http://127.0.0.1:{closed_port}/x.zarr"], "cannot reach")
    _one_line(align_main, ["inspect", f"ftp://127.0.0.1:{closed_port}/x.zarr"], "cannot reach")
    _one_line(align_main, ["inspect", "gopher://127.0.0.1/x.zarr"], "gopher://", "no such protocol")
    _one_line(align_main, ["pack", "-m", PAIRS, "--out", "gopher://127.0.0.1/x.zarr"], "no such protocol")


def test_metadata_nested_too_deep(tmp_path):
    store = tmp_path / "deep.zarr"
    store.mkdir()
    depth = 200_000
    (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {"a": '
                                     + "[" * depth + "]" * depth + "}}")
    _one_line(align_main, ["inspect", str(store)], "nests too deep")
    _one_line(align_main, ["verify", str(store)], "nests too deep")
    _one_line(align_main, ["pack", "-m", PAIRS, "--out", str(store)], "damaged Zarr metadata")
    _one_line(main, ["train", "-d", str(store), "--out", str(tmp_path / "run")], "nests too deep")
    assert not (tmp_path / "run").exists()  # the run folder made for the lock is removed again
