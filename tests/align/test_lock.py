"""One writer at a time: a second build refuses at once naming the holder; a lock left by a
killed build does not block forever; a build whose store was taken over is not marked complete."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import zarr

from crossfuse.align import BuildParams, pack, tasks, verify
from crossfuse.align.lock import lock_path, store_lock
from crossfuse.errors import StoreLockedError
from crossfuse.schema import ARRAYS
from tests.helpers import SAMPLE_AUX, SAMPLE_TARGET

PARAMS = BuildParams(patch=64, stride=200, chunk=16)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_writer_refuses_at_once_naming_the_holder(tmp_path, sample_target, engine):
    out = str(tmp_path / "c.zarr")
    with store_lock(out):
        with pytest.raises(StoreLockedError, match=rf"being written by another build: pid {os.getpid()} on "
                                                   rf"{socket.gethostname()}, since 20"):
            pack(dataset=sample_target, out=out, params=PARAMS, engine=engine)
    assert not os.path.exists(out)  # refused before anything was written
    pack(dataset=sample_target, out=out, params=PARAMS, engine=engine)  # the lock was released
    assert not os.path.exists(lock_path(out))


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, sample_target, engine, caplog):
    out = str(tmp_path / "c.zarr")
    with open(lock_path(out), "w") as fh:
        json.dump({"host": socket.gethostname(), "pid": _dead_pid(), "started": "2026-01-01T00:00:00+00:00"}, fh)
    with caplog.at_level("WARNING", logger="crossfuse"):
        pack(dataset=sample_target, out=out, params=PARAMS, engine=engine)
    assert "took over a stale lock" in caplog.text  # a log line, not a Python warning with its source line
    assert verify(out, check_sources=False).ok and not os.path.exists(lock_path(out))


def test_a_lock_from_another_host_needs_break_lock(tmp_path, sample_target, engine, caplog):
    out = str(tmp_path / "c.zarr")
    with open(lock_path(out), "w") as fh:
        json.dump({"host": "elsewhere", "pid": 1, "started": "2026-01-01T00:00:00+00:00", "command": "build"}, fh)
    with pytest.raises(StoreLockedError, match="pid 1 on elsewhere.*--break-lock"):
        pack(dataset=sample_target, out=out, params=PARAMS, engine=engine)
    with caplog.at_level("WARNING", logger="crossfuse"):
        pack(dataset=sample_target, out=out, params=PARAMS, engine=engine, break_lock=True)
    assert "broke the lock" in caplog.text


def test_a_store_taken_over_mid_build_is_not_marked_complete(tmp_path, monkeypatch, sample_target, engine):
    """Object stores have no lock file: the writer token in the scratch group is the check."""
    out = str(tmp_path / "c.zarr")
    real = tasks.write_chunk

    def another_writer_arrives(url, *args):
        zarr.open_group(url, mode="r+")["_partial"].attrs["writer"] = "someone-else"
        return real(url, *args)

    monkeypatch.setattr(tasks, "write_chunk", another_writer_arrives)
    with pytest.raises(StoreLockedError, match="another build took this store over"):
        pack(dataset=sample_target, out=out, params=PARAMS, engine=engine)
    assert zarr.open_group(out, mode="r").attrs["crossfuse"]["complete"] is False


@pytest.mark.slow
def test_two_real_builds_racing_for_one_store(tmp_path):
    """Two processes start the same build at once: one writes the store, the other refuses with
    the holder named (no traceback); the store is complete and sound."""
    out = tmp_path / "race.zarr"
    cmd = [sys.executable, "-m", "crossfuse.cli.align", "build", "-t", str(SAMPLE_TARGET), "-a", str(SAMPLE_AUX),
           "-k", "100", "-s", "64", "--chunk", "16", "-j", "1", "-q", "-o", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "being written by another build: pid" in loser[2] and "Traceback" not in loser[2]
    assert verify(str(out), check_sources=False).ok
    whole = tmp_path / "whole.zarr"
    subprocess.run(cmd[:-1] + [str(whole)], check=True, capture_output=True)
    a, b = zarr.open_group(str(out), mode="r"), zarr.open_group(str(whole), mode="r")
    assert all(np.array_equal(a[n][...], b[n][...]) for n in ARRAYS)
