"""The corpus loader on a real corpus: formula, determinism, coverage, DDP and worker shares."""

import numpy as np
import pytest
import torch
import zarr

from crossfuse.errors import ParameterError, StoreError
from crossfuse.corpus.reading import Corpora, PatchBatches, plan_epoch, to_model_inputs


def _rows(batches):
    return [(b.corpus, b.start + int(i)) for batch in batches for b, ix in batch for i in ix]


def test_refuses_incomplete_and_foreign_stores(tmp_path, sample_corpus):
    g = zarr.open_group(str(tmp_path / "half.zarr"), mode="w")
    g.attrs["crossfuse"] = {"schema": 1, "kind": "aligned", "complete": False}
    with pytest.raises(StoreError, match="incomplete"):
        Corpora([str(tmp_path / "half.zarr")])
    g.attrs["crossfuse"] = {"schema": 7, "kind": "aligned", "complete": True}
    with pytest.raises(StoreError, match="schema 7"):
        Corpora([str(tmp_path / "half.zarr")])
    with pytest.raises(StoreError, match="no Zarr group"):
        Corpora([str(tmp_path / "missing.zarr")])
    with pytest.raises(ParameterError, match="one positive weight per corpus"):
        Corpora([sample_corpus[0]], [1.0, 2.0])


def test_luma_and_scale(sample_corpus):
    g = zarr.open_group(sample_corpus[0], mode="r")
    vis, ir = g["vis"][:5], g["ir"][:5]
    y, i = to_model_inputs(torch.from_numpy(vis), torch.from_numpy(ir))
    expected = (0.299 * vis[:, 0].astype(np.float64) + 0.587 * vis[:, 1] + 0.114 * vis[:, 2]) / 255
    assert y.shape == i.shape == (5, 1, 64, 64) and y.dtype == torch.float32
    assert np.allclose(y[:, 0].numpy(), expected, atol=1e-6) and torch.equal(i * 255, torch.from_numpy(ir).float())


def test_epoch_covers_every_patch_once_deterministically(sample_corpus):
    c = Corpora([sample_corpus[0]])
    n = len(c)
    plan = plan_epoch(c, seed=1, epoch=0, batch_size=8)
    rows = _rows(plan.batches)
    assert len(rows) == len(set(rows)) == (n // 8) * 8 and plan.batches_per_rank == n // 8
    assert rows == _rows(plan_epoch(c, seed=1, epoch=0, batch_size=8).batches)
    assert rows != _rows(plan_epoch(c, seed=1, epoch=1, batch_size=8).batches)


def test_ranks_get_disjoint_equal_shares(sample_corpus):
    c = Corpora([sample_corpus[0]])
    whole = plan_epoch(c, seed=0, epoch=3, batch_size=8)
    plans = [plan_epoch(c, seed=0, epoch=3, batch_size=8, rank=r, world=3) for r in range(3)]
    shares = [set(_rows(p.batches)) for p in plans]
    assert all(not shares[i] & shares[j] for i in range(3) for j in range(i + 1, 3))
    assert plans[0].batches_per_rank == plans[1].batches_per_rank == plans[2].batches_per_rank == len(whole.batches) // 3
    assert _rows(plans[1].batches) == _rows(whole.batches[1::3][:len(whole.batches) // 3])


def test_weights_repeat_corpora(sample_corpus):
    c = Corpora([sample_corpus[0], sample_corpus[0]], [2.0, 0.5])
    rows = _rows(plan_epoch(c, seed=0, epoch=0, batch_size=1).batches)
    first = [r for r in rows if r[0] == 0]
    assert len(first) == 2 * c.lengths[0] and len(set(first)) == c.lengths[0]
    second = [r for r in rows if r[0] == 1]
    assert 0 < len(second) < c.lengths[0]


def test_memory_and_streaming_paths_and_workers_agree(sample_corpus):
    batches = {}
    for in_memory in (True, False):
        ds = PatchBatches(Corpora([sample_corpus[0]], in_memory=in_memory), batch_size=8, seed=0, buffer_chunks=2)
        batches[in_memory] = list(ds)
    for in_memory in (True, False):  # loader worker processes, each reading its own share
        loader = torch.utils.data.DataLoader(
            PatchBatches(Corpora([sample_corpus[0]], in_memory=in_memory), batch_size=8, seed=0, buffer_chunks=2),
            batch_size=None, num_workers=2)
        batches[f"workers {in_memory}"] = list(loader)
    reference = batches[True]
    g = zarr.open_group(sample_corpus[0], mode="r")
    plan = plan_epoch(Corpora([sample_corpus[0]]), seed=0, epoch=0, batch_size=8, buffer_chunks=2)
    for (vis, ir), parts in zip(reference, plan.batches):  # the planned rows, as stored
        rows = np.concatenate([b.start + ix for b, ix in parts])
        assert vis.dtype == ir.dtype == torch.uint8
        assert np.array_equal(vis.numpy(), g["vis"].get_orthogonal_selection(rows))
        assert np.array_equal(ir.numpy(), g["ir"].get_orthogonal_selection(rows))
    for other in (batches[False], batches["workers True"], batches["workers False"]):
        assert len(other) == len(reference)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(reference, other))


def test_weighted_streaming_with_batches_wider_than_the_read_window(sample_corpus):
    """Repeated blocks, batches spanning more blocks than ``buffer_chunks``: streaming still
    serves exactly the in-memory batches."""
    urls, weights = [sample_corpus[0], sample_corpus[0]], [2.0, 0.5]
    out = {}
    for in_memory in (True, False):
        ds = PatchBatches(Corpora(urls, weights, in_memory=in_memory), batch_size=24, seed=5, buffer_chunks=1)
        ds.set_epoch(2)
        out[in_memory] = list(ds)
    assert len(out[True]) == len(out[False]) > 0
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(out[True], out[False]))
