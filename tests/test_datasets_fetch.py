"""``crossfuse-align datasets fetch``: every file checked against the manifest's sha256, fetched
from a local HTTP server (the network is not used), resumable, a wrong file refused and not kept."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading

import pytest
from click.testing import CliRunner

from crossfuse import manifest
from crossfuse.align.datasets import SOURCES
from crossfuse.cli.align import main
from tests.helpers import DATASETS, REPO

SAMPLE = REPO / "data_manifests" / "sample-target-test.json"


@pytest.fixture
def serve():
    servers = []

    def start(folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a, **k: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()


def _fetch(*args):
    return CliRunner().invoke(main, ["datasets", "fetch", *args, "-q"])


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_checks_every_file_resumes_and_refuses_a_wrong_one(serve, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(REPO / "data_manifests" / "sample" / "roadscene", mirror)
    url, out = serve(mirror), tmp_path / "data"
    r = _fetch(str(SAMPLE), "--to", str(out), "--from", url)
    assert r.exit_code == 0, r.output
    assert "4 file(s) fetched, 0 already there" in r.output and f"--root {out}" in r.output
    listed = manifest.load(str(SAMPLE))
    for pair in listed.pairs:
        assert _digest(out / pair.ir) == pair.ir_sha256 and _digest(out / pair.vis) == pair.vis_sha256
    # The fetched folder is the dataset: packing it with --root works.
    r = _fetch(str(SAMPLE), "--to", str(out), "--from", url)
    assert r.exit_code == 0 and "0 file(s) fetched, 4 already there" in r.output
    # A file changed on the server: refused, naming it, and the damaged local copy is replaced only by a good one.
    bad = listed.pairs[1].vis
    (out / bad).unlink()
    (mirror / bad).write_bytes(b"not the image")
    r = _fetch(str(SAMPLE), "--to", str(out), "--from", url)
    assert r.exit_code == 1 and bad in r.output and "not the file" in r.output and "Traceback" not in r.output
    assert not (out / bad).exists() and not list(out.rglob("*.tmp*"))


def test_unreachable_source_is_one_line(tmp_path):
    r = _fetch(str(SAMPLE), "--to", str(tmp_path / "d"), "--from", "http://127.0.0.1:9", "--timeout", "2")
    assert r.exit_code == 1 and "cannot fetch http://127.0.0.1:9/" in r.output and "Traceback" not in r.output


def test_unknown_name_and_unknown_source_are_named(tmp_path):
    r = _fetch("nope", "--to", str(tmp_path))
    assert r.exit_code == 1 and "no manifest 'nope'" in r.output and "tno-test" in r.output
    r = _fetch(str(SAMPLE), "--to", str(tmp_path))  # the sample's folder has no known source
    assert r.exit_code == 1 and "--from" in r.output


def test_source_rules_map_to_the_recorded_repositories():
    assert SOURCES["TNO"].url("ir/07.bmp").endswith("/5f287300dce7cbc90b9e08e6872455af6baa279f/"
                                                    "Datasets/Test_data_TNO/IR7.bmp")
    assert SOURCES["TNO"].url("vis/10.bmp").endswith("/Datasets/Test_data_TNO/VIS10.bmp")
    assert SOURCES["MSRS"].url("vis/00004N.png").endswith("/datasets/test_imgs/vi/00004N.png")
    assert SOURCES["RoadScene"].url("ir/FLIR_00006.jpg").startswith("https://raw.githubusercontent.com/hanna-xu/")
    assert SOURCES["VIFB"].url("vis/carLight.jpg").endswith("/input/VI/carLight.jpg")


def test_a_manual_dataset_says_what_to_download_then_checks_it(tmp_path):
    r = _fetch("m3fd", "--to", str(tmp_path / "m3fd"))
    assert r.exit_code == 1 and "SAGE_IVIF" in r.output and "20 file(s)" in r.output
    if not (DATASETS / "M3FD").is_dir():
        return
    shutil.copytree(DATASETS / "M3FD" / "ir", tmp_path / "m3fd" / "ir")
    shutil.copytree(DATASETS / "M3FD" / "vis", tmp_path / "m3fd" / "vis")
    r = _fetch("m3fd", "--to", str(tmp_path / "m3fd"))
    assert r.exit_code == 0 and "20 already there" in r.output, r.output


@pytest.mark.skipif(not (DATASETS / "TNO").is_dir(), reason="needs ../shared/datasets")
def test_tno_test_from_a_server_of_the_shared_copy(serve, tmp_path):
    r = _fetch("tno-test", "--to", str(tmp_path / "TNO"), "--from", serve(DATASETS / "TNO"))
    assert r.exit_code == 0 and "48 file(s) fetched" in r.output, r.output
    r = CliRunner().invoke(main, ["pack", "-m", str(REPO / "data_manifests" / "tno-test.json"), "--root",
                                  str(tmp_path / "TNO"), "--out", str(tmp_path / "tno.zarr"), "-q"])
    assert r.exit_code == 0, r.output


def test_a_relative_root_override_is_taken_from_the_working_folder(serve, tmp_path, monkeypatch):
    """The README's tour: `fetch ... --to data/X` then `--root data/X`. The override was taken
    from the manifest's folder (data_manifests/data/X) and the build refused a root that exists."""
    out = tmp_path / "work"
    out.mkdir()
    monkeypatch.chdir(out)
    r = _fetch(str(SAMPLE), "--to", "data/sample", "--from", serve(REPO / "data_manifests" / "sample" / "roadscene"))
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["pack", "-m", str(SAMPLE), "--root", "data/sample", "--out", "s.zarr", "-q"])
    assert r.exit_code == 0, r.output
    assert manifest.load(str(SAMPLE), root="data/sample").root == str(out / "data" / "sample")


def test_eval_takes_the_fetched_folder_as_root(tmp_path, monkeypatch):
    """The tour's last step: eval of fused images whose sources were fetched elsewhere."""
    import shutil as sh

    from crossfuse.cli.main import main as cf

    monkeypatch.chdir(tmp_path)
    sh.copytree(REPO / "data_manifests" / "sample" / "roadscene", tmp_path / "data")
    (tmp_path / "fused").mkdir()
    listed = manifest.load(str(SAMPLE))
    for pair in listed.pairs:
        sh.copy(listed.url(pair.vis), tmp_path / "fused" / f"{pair.id}.jpg")
    r = CliRunner().invoke(cf, ["eval", "-f", "fused", "--pairs", str(SAMPLE), "--root", "data", "-j", "1"])
    assert r.exit_code == 0 and "mean" in r.output, r.output
    r = CliRunner().invoke(cf, ["eval", "-f", "fused", "--pairs", str(SAMPLE), "--pairs", str(SAMPLE), "--root", "data"])
    assert r.exit_code == 2 and "one --pairs" in r.output
