"""The public corpus API (crossfuse.fusion.corpus) on a real corpus, and the example that uses it."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import zarr

from crossfuse.errors import ParameterError
from crossfuse.fusion import corpus
from crossfuse.fusion.data import Corpora, PatchBatches, to_model_inputs
from tests.helpers import REPO


def _stored(url):
    g = zarr.open_group(url, mode="r")
    return {name: g[name][...] for name in ("vis", "ir", "source", "origin")}


@pytest.mark.parametrize("in_memory", [True, False])
def test_map_style_items_are_the_stored_rows(sample_corpus, in_memory):
    url = sample_corpus[0]
    stored = _stored(url)
    data = corpus.PatchDataset([url, url], in_memory=in_memory, cache_chunks=2)
    n = len(stored["vis"])
    assert len(data) == 2 * n and data.records[0].counts.patches == n and data.records[0].kind == "aligned"
    for index in (0, 47, 48, n - 1, n, 2 * n - 1, -1, 13, 140):  # chunk borders (48), second corpus
        item = data[index]
        row = index % n
        assert item["corpus"] == (index % (2 * n)) // n
        assert torch.equal(item["vis"], torch.from_numpy(stored["vis"][row]))
        assert torch.equal(item["ir"], torch.from_numpy(stored["ir"][row]))
        assert item["source"] == stored["source"][row] and item["origin"].tolist() == stored["origin"][row].tolist()
    with pytest.raises(IndexError):
        data[2 * n]
    again = pickle.loads(pickle.dumps(data))  # what a loader worker receives
    assert torch.equal(again[5]["vis"], data[5]["vis"])


def test_luma_items_and_a_dataloader_over_the_dataset(sample_corpus):
    url = sample_corpus[0]
    stored = _stored(url)
    data = corpus.PatchDataset([url], visible="y")
    y, ir = to_model_inputs(torch.from_numpy(stored["vis"][7:8]), torch.from_numpy(stored["ir"][7:8]))
    assert data[7]["vis"].shape == (1, 64, 64) and torch.equal(data[7]["vis"], y[0]) and torch.equal(data[7]["ir"], ir[0])
    loader = torch.utils.data.DataLoader(data, batch_size=10, num_workers=2)
    first = next(iter(loader))
    assert first["vis"].shape == (10, 1, 64, 64) and first["origin"].shape == (10, 2)
    with pytest.raises(ParameterError, match="visible"):
        corpus.PatchDataset([url], visible="bgr")


def test_loader_batches_are_named_deterministic_and_match_the_trainers(sample_corpus):
    url = sample_corpus[0]
    stored = _stored(url)
    loader = corpus.PatchLoader([url], batch_size=16, seed=3)
    loader.set_epoch(1)
    batches = list(loader)
    assert len(batches) == len(loader) > 0 and set(batches[0]) == {"vis", "ir", "source", "origin", "corpus"}
    trainer_side = PatchBatches(Corpora([url]), batch_size=16, seed=3)
    trainer_side.set_epoch(1)
    for ours, (vis, ir) in zip(batches, trainer_side):
        assert torch.equal(ours["vis"], vis) and torch.equal(ours["ir"], ir)
        # source and origin say where each patch is: its row in the store has the same pixels
        for k in range(3):
            row = np.flatnonzero((stored["source"] == int(ours["source"][k]))
                                 & (stored["origin"] == ours["origin"][k].numpy()).all(axis=1))
            assert len(row) == 1 and np.array_equal(stored["vis"][row[0]], ours["vis"][k].numpy())
    again = corpus.PatchLoader([url], batch_size=16, seed=3)
    again.set_epoch(1)
    assert all(torch.equal(a["vis"], b["vis"]) for a, b in zip(batches, again))
    shares = [corpus.PatchLoader([url], batch_size=16, seed=3, rank=r, world=2) for r in (0, 1)]
    for s in shares:
        s.set_epoch(1)
    seen = [{(int(b["source"][k]), *b["origin"][k].tolist()) for b in s for k in range(16)} for s in shares]
    assert len(shares[0]) == len(shares[1]) > 0 and not seen[0] & seen[1]  # disjoint DDP shares


def test_example_trains_another_model_through_the_api(sample_corpus):
    r = subprocess.run([sys.executable, str(REPO / "examples" / "train_other_model.py"), sample_corpus[0],
                        "--steps", "3", "--batch-size", "8"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    steps = [line for line in r.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == 3 and all(np.isfinite(float(line.split()[-1])) for line in steps)
    assert "corpus: aligned, 200 patches of 64px" in r.stdout
