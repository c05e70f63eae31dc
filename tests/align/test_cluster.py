"""Scale-out on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on
127.0.0.1 (their own ports, stopped at the end). A build through --scheduler equals a local
build; one that loses a worker mid-build still does; one that loses every worker or its scheduler
fails with a message (no hang) and resumes on the local engine to the same arrays."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from crossfuse.schema import ARRAYS, PARTIAL_GROUP
from tests.helpers import SAMPLE_AUX, SAMPLE_TARGET

pytestmark = pytest.mark.slow
DASK = str(Path(sys.executable).with_name("dask"))
BUILD = [sys.executable, "-m", "crossfuse.cli.align", "build", "-t", str(SAMPLE_TARGET), "-a", str(SAMPLE_AUX),
         "-k", "150", "-s", "64", "--chunk", "8", "-q"]


class Cluster:
    def __init__(self, folder: Path, workers: int = 2) -> None:
        self.file = folder / "scheduler.json"
        common = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                           "--scheduler-file", str(self.file)], **common)
        deadline = time.time() + 60
        while not self.file.exists() and time.time() < deadline:
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        self.workers = [subprocess.Popen([DASK, "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
                                          "--no-dashboard", "--nworkers", "1", "--no-nanny"], **common)
                        for _ in range(workers)]
        import distributed

        with distributed.Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)

    def stop(self) -> None:
        for proc in self.workers + [self.scheduler]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "local.zarr"
    subprocess.run([*BUILD, "-o", str(out)], check=True, capture_output=True)
    return out


def _same(a: Path, b: Path) -> None:
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    assert all(np.array_equal(ga[n][...], gb[n][...]) for n in ARRAYS)
    ra, rb = dict(ga.attrs["crossfuse"]), dict(gb.attrs["crossfuse"])
    for key in ("created", "record_sha256"):
        ra.pop(key), rb.pop(key)
    assert ra == rb


def _wait_for_written(out: Path, proc: subprocess.Popen) -> None:
    partial = out / PARTIAL_GROUP / "zarr.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(partial.read_text())["attributes"].get("written"):
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass  # not there yet, or caught in the middle of a write
        time.sleep(0.05)


def test_a_build_on_a_real_cluster_equals_a_local_one(tmp_path, cluster, local_build):
    out = tmp_path / "cluster.zarr"
    r = subprocess.run([*BUILD, "--scheduler", cluster.address, "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _same(out, local_build)


def test_losing_one_worker_mid_build_changes_nothing(tmp_path, cluster, local_build):
    out = tmp_path / "one-lost.zarr"
    proc = subprocess.Popen([*BUILD, "--scheduler", cluster.address, "-o", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_written(out, proc)
    os.killpg(cluster.workers[0].pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    _same(out, local_build)


#: A longer build (400 patches in 400 one-patch chunks, each decoding a candidate blob), so that the
#: cluster can die in the middle of it.
LONG = [*BUILD[:BUILD.index("-k")], "-k", "400", "-s", "16", "--chunk", "1", "-q"]


@pytest.fixture(scope="module")
def long_build(tmp_path_factory):
    """The longer build made locally in one go: what every interrupted one must resume to."""
    whole = tmp_path_factory.mktemp("long") / "whole.zarr"
    subprocess.run([*LONG, "-o", str(whole)], check=True, capture_output=True)
    return whole


@pytest.mark.parametrize("lose", ["every worker", "the scheduler"])
def test_a_dead_cluster_fails_with_a_message_and_the_store_resumes(tmp_path, cluster, lose, long_build):
    out = tmp_path / "dead.zarr"
    proc = subprocess.Popen([*LONG, "--scheduler", cluster.address, "--worker-timeout", "3", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_written(out, proc)
    for victim in (cluster.workers if lose == "every worker" else [cluster.scheduler]):
        os.killpg(victim.pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)  # a hang fails here
    if proc.returncode == 0:
        pytest.skip("the build finished before the cluster died")
    assert proc.returncode == 1 and "rerun the same command to resume" in stderr and "Traceback" not in stderr, stderr
    r = subprocess.run([*LONG, "-o", str(out)], capture_output=True, text=True)  # on this machine
    assert r.returncode == 0 and "resumed and completed" in r.stdout, r.stderr
    _same(out, long_build)
