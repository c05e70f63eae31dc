"""Paths of the test data, and a plain serial oracle of the paper's alignment procedure."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "data_manifests"
SAMPLE_TARGET = MANIFESTS / "sample-target.json"
SAMPLE_AUX = MANIFESTS / "sample-aux.json"
SHARED = Path(os.environ.get("CROSSFUSE_SHARED", REPO.parent / "shared"))
DATASETS = SHARED / "datasets"
#: Small parameters that give the sample a few hundred patches and several chunks.
SAMPLE_PARAMS = {"patch": 64, "stride": 64, "k": 200, "chunk": 48}

needs_shared = pytest.mark.skipif(not (DATASETS / "RoadScene").is_dir(), reason="../shared/datasets is absent")


# ---- a plain, serial re-statement of the paper's procedure (the test oracle) ----

def plain_patches(manifest, patch: int, stride: int):
    """Every patch of a manifest, read with Pillow directly: list of (pair index, y, x, vis, ir)."""
    out = []
    for i, pair in enumerate(manifest.pairs):
        vis = np.asarray(Image.open(manifest.url(pair.vis)).convert("RGB"))
        ir = np.asarray(Image.open(manifest.url(pair.ir)).convert("L"))
        for y in range(0, vis.shape[0] - patch + 1, stride):
            for x in range(0, vis.shape[1] - patch + 1, stride):
                out.append((i, y, x, vis[y:y + patch, x:x + patch], ir[y:y + patch, x:x + patch]))
    return out


def source_patches(group, record, spec=SAMPLE_AUX, patch: int = 64) -> np.ndarray:
    """The visible patches of a corpus as their source images hold them (before any transform),
    cut at the recorded origins of the recorded sources of dataset ``spec``: (n, 3, P, P) uint8."""
    from crossfuse import manifest
    from crossfuse.imageio import read_pair

    data = manifest.load(str(spec))
    by_id = {p.id: p for p in data.pairs}
    out = []
    for s, (y, x) in zip(group["source"][...], group["origin"][...]):
        vis = read_pair(data, by_id[record.sources[s].id]).vis
        out.append(vis[y:y + patch, x:x + patch].transpose(2, 0, 1))
    return np.stack(out)


def plain_alignment(target, aux, patch: int, stride: int, k: int):
    """Target means, the selected patches (sorted by pair then origin) and their distances."""
    tmeans = np.mean([p[3].reshape(-1, 3).astype(np.float64).mean(0) for p in plain_patches(target, patch, stride)], 0)
    pool = plain_patches(aux, patch, stride)
    means = np.array([p[3].reshape(-1, 3).astype(np.float64).mean(0) for p in pool])
    dist = np.abs(means - tmeans).sum(1)
    chosen = np.sort(np.argsort(dist, kind="stable")[:k])
    return tmeans, [pool[i] for i in chosen], dist[chosen], dist


def plain_lut(gamma: float) -> np.ndarray:
    return np.array([int(((v / 255.0) ** (1.0 / gamma)) * 255) for v in range(256)], dtype=np.uint8)


def crash_writes_at(monkeypatch, start: int, *, write=None) -> None:
    """Make the build's chunk-writing task raise "simulated crash" for the chunk starting at row
    ``start`` (a build killed mid-write); ``write`` is the real task (default: the current one)."""
    from crossfuse.align import tasks

    real = write or tasks.write_chunk

    def crashing_write(url, role, first, stop, *args):
        if first == start:
            raise RuntimeError("simulated crash")
        return real(url, role, first, stop, *args)

    monkeypatch.setattr(tasks, "write_chunk", crashing_write)


REFERENCE = SHARED / "reference"
needs_reference = pytest.mark.skipif(not (REFERENCE / "official_net_seed0.pth").is_file(),
                                     reason="../shared/reference is absent")


def run_torchrun(args: list[str], *, timeout: int = 300) -> None:
    """Run ``python -m torch.distributed.run --standalone --nproc_per_node 2 ARGS`` with one thread
    per rank, in its own process group so that a hang kills every rank; fails the test on a
    non-zero exit with the end of its stderr."""
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
