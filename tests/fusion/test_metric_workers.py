"""Metrics in forked worker processes. torch's CPU thread pool does not survive ``fork``: a worker
forked after its parent ran torch on several threads hung for ever in its first FFT (VIFB's Qcb and
Qcv, CDDFuse's VIF and SSIM), unless something set it to one thread first. The metrics now do it
themselves (``common.torch_fork_safe``), so any process pool can score."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import MANIFESTS

SCRIPT = """
import json, multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
import numpy as np, torch
from crossfuse.fusion.metrics import cddfuse, vifb

root = sys.argv[1]
vis = vifb.read(root + "/vis/FLIR_00006.jpg")[:120, :160]
ir = vifb.read(root + "/ir/FLIR_00006.jpg")[:120, :160]
fused = np.maximum(vis, ir[..., None])

def scores(_=None):
    f, a, b = cddfuse.gray(fused), cddfuse.gray(ir), cddfuse.gray(vis)
    return [vifb.qcb(vis=vis, ir=ir, fused=fused), vifb.qcv(vis=vis, ir=ir, fused=fused), cddfuse.vif(fused=f, ir=a, vis=b),
            cddfuse.ssim(fused=f, ir=a, vis=b)]

torch.set_num_threads(2)
x = torch.randn(1500, 1500)
(x @ x).sum()                       # the parent's thread pool runs
here = scores()                     # and its FFTs too, on two threads
with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
    there = list(pool.map(scores, range(4)))
print(json.dumps({"here": here, "there": there}))
"""


def test_metrics_in_workers_forked_after_torch_ran_on_several_threads():
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(MANIFESTS / "sample" / "roadscene")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the hung workers too
        proc.communicate()
        raise AssertionError("a worker forked after torch ran on several threads hung in a metric") from None
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert len(result["there"]) == 4 and all(v == v for v in result["here"])   # no NaN
    for values in result["there"]:   # one thread or two: the same scores
        assert values == pytest.approx(result["here"], rel=1e-12)
