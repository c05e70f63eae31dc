"""The public corpus API (crossfuse.corpus) on a real corpus, and the example that uses it."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from crossfuse.errors import ParameterError
from crossfuse import corpus
from crossfuse.corpus.reading import Corpora, PatchBatches, to_model_inputs
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
    assert len(batches) == len(loader) > 0
    assert set(batches[0]) == {"vis", "ir", "source", "origin", "means", "distance", "corpus"}
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


def test_every_stored_column_with_one_dtype_each(sample_corpus):
    url = sample_corpus[0]
    g = zarr.open_group(url, mode="r")
    item = corpus.PatchDataset([url])[60]
    assert torch.equal(item["means"], torch.from_numpy(g["means"][60])) and item["distance"] == float(g["distance"][60])
    for visible, pixel in (("rgb", torch.uint8), ("y", torch.float32)):
        loader = corpus.PatchLoader([url], batch_size=8, seed=0, visible=visible)
        loader.set_epoch(0)
        batch = next(iter(loader))
        dtypes = {k: v.dtype for k, v in batch.items()}
        assert dtypes == {"vis": pixel, "ir": pixel, "source": torch.int32, "origin": torch.int32,
                          "means": torch.float32, "distance": torch.float32, "corpus": torch.int64}
        # means and distance belong to the patch: the row the source and origin name
        k = 3
        row = int(np.flatnonzero((g["source"][...] == int(batch["source"][k]))
                                 & (g["origin"][...] == batch["origin"][k].numpy()).all(axis=1))[0])
        assert np.array_equal(batch["means"][k].numpy(), g["means"][row]) and batch["distance"][k] == g["distance"][row]


@pytest.mark.parametrize("workers_after", [0, 2])
def test_mid_epoch_resume_gives_the_batches_an_uninterrupted_epoch_would(sample_corpus, workers_after):
    url = sample_corpus[0]
    whole = corpus.PatchLoader([url, url], batch_size=8, seed=5, weights=[1, 0.5], fields=("vis", "source", "origin"))
    whole.set_epoch(2)
    expected = list(whole)
    first = corpus.PatchLoader([url, url], batch_size=8, seed=5, weights=[1, 0.5], fields=("vis", "source", "origin"),
                               workers=2)
    first.set_epoch(2)
    got = []
    for batch in first:
        got.append(batch)
        if len(got) == 7:
            state = first.state_dict()
            break  # "killed" after 7 batches
    assert state["epoch"] == 2 and state["batch"] == 7
    later = corpus.PatchLoader([url, url], batch_size=8, seed=5, weights=[1, 0.5], fields=("vis", "source", "origin"),
                               workers=workers_after)
    later.load_state_dict(state)
    later.set_epoch(2)
    assert len(later) == len(expected) - 7
    got += list(later)
    assert len(got) == len(expected)
    assert all(torch.equal(a["vis"], b["vis"]) and torch.equal(a["origin"], b["origin"]) for a, b in zip(got, expected))
    later.set_epoch(3)  # the next epoch starts from its beginning
    whole.set_epoch(3)
    assert len(later) == len(whole)
    other = corpus.PatchLoader([url], batch_size=8, seed=5)
    with pytest.raises(ParameterError, match="seed|stores|weights"):
        other.load_state_dict(state)


def test_drop_last_and_a_per_sample_transform(sample_corpus):
    url = sample_corpus[0]  # 200 patches: 12 full batches of 16 and one of 8
    kept = corpus.PatchLoader([url], batch_size=16, seed=1, drop_last=False)
    kept.set_epoch(0)
    sizes = [len(b["vis"]) for b in kept]
    assert sizes == [16] * 12 + [8] and len(kept) == 13
    dropped = corpus.PatchLoader([url], batch_size=16, seed=1)
    dropped.set_epoch(0)
    assert len(list(dropped)) == 12

    def flip(sample):
        return {**sample, "vis": sample["vis"].flip(-1)}

    plain = corpus.PatchLoader([url], batch_size=16, seed=1, fields=("vis", "ir"))
    flipped = corpus.PatchLoader([url], batch_size=16, seed=1, fields=("vis", "ir"), transform=flip, workers=2)
    plain.set_epoch(0)
    flipped.set_epoch(0)
    for a, b in zip(plain, flipped):
        assert torch.equal(a["vis"].flip(-1), b["vis"]) and torch.equal(a["ir"], b["ir"])


def test_the_old_import_path_still_works_and_warns():
    import importlib
    import sys as _sys

    for name in ("crossfuse.fusion.corpus", "crossfuse.fusion.data"):
        _sys.modules.pop(name, None)
        with pytest.warns(DeprecationWarning, match="moved to crossfuse.corpus"):
            module = importlib.import_module(name)
        assert module.__all__
    from crossfuse.fusion.corpus import PatchLoader

    assert PatchLoader is corpus.PatchLoader


def test_the_trainer_reads_through_the_public_loader(sample_corpus, tmp_path):
    from crossfuse.fusion.config import TrainConfig
    from crossfuse.fusion.network import NetworkConfig
    from crossfuse.fusion.trainer import Trainer

    cfg = TrainConfig(epochs=1, phase1_epochs=1, batch_size=4, steps_per_epoch=1,
                      network=NetworkConfig(dim=8, heads=2, encoder_blocks=1, decoder_blocks=1, detail_nodes=1))
    trainer = Trainer.setup(data=[sample_corpus[0]], out=str(tmp_path / "run"), cfg=cfg)
    try:
        assert isinstance(trainer.loader, corpus.PatchLoader) and trainer.loader.batches.fields == ("vis", "ir")
    finally:
        trainer.close()


def test_subsets_read_part_of_a_corpus_without_copying_it(sample_corpus, tmp_path):
    url = sample_corpus[0]
    g = zarr.open_group(url, mode="r")
    distance, source = g["distance"][...], g["source"][...]
    record = corpus.PatchDataset([url]).records[0]
    files_before = sorted(str(p) for p in Path(url).rglob("*"))
    best = corpus.PatchDataset([url], subset=corpus.Subset(best=50))
    rows = sorted(np.argsort(distance, kind="stable")[:50].tolist())
    assert len(best) == 50 and [best[i]["distance"] for i in range(50)] == [float(distance[r]) for r in rows]
    # by pair id: every patch of those pairs, and no other
    ids = [record.sources[i].id for i in np.unique(source)[:2]]
    wanted = np.flatnonzero(np.isin(source, [i for i, s in enumerate(record.sources) if s.id in ids]))
    loader = corpus.PatchLoader([url], batch_size=4, seed=0, drop_last=False, subset=corpus.Subset(pairs=ids))
    loader.set_epoch(0)
    seen = sorted((int(b["source"][k]), *b["origin"][k].tolist()) for b in loader for k in range(len(b["source"])))
    assert seen == sorted((int(source[r]), *g["origin"][r].tolist()) for r in wanted) and len(seen) == len(wanted)
    # both: the best 10 of those pairs
    both = corpus.PatchDataset([url], subset=corpus.Subset(pairs=ids, best=10))
    assert len(both) == 10  # numbered in stored order, so compare as sets of distances
    assert sorted(both[i]["distance"] for i in range(10)) == sorted(float(distance[r]) for r in wanted)[:10]
    # by auxiliary dataset: a corpus of another dataset gives nothing; nothing at all is an error
    mixed = corpus.PatchDataset([url, url], subset=corpus.Subset(datasets=record.aux.name))
    assert len(mixed) == 400
    with pytest.raises(ParameterError, match="keeps no patch"):
        corpus.PatchDataset([url], subset=corpus.Subset(datasets="elsewhere"))
    assert sorted(str(p) for p in Path(url).rglob("*")) == files_before  # nothing written


def test_a_stream_for_your_own_dataloader_gives_the_loaders_batches(sample_corpus):
    url = sample_corpus[0]
    ours = corpus.PatchLoader([url], batch_size=16, seed=2, fields=("vis", "ir", "source"))
    stream = corpus.PatchStream([url], batch_size=16, seed=2, fields=("vis", "ir", "source"))

    def collate(samples):  # the user's own collate_fn: a tuple, not a dict
        return torch.stack([s["vis"] for s in samples]), torch.stack([s["ir"] for s in samples])

    theirs = torch.utils.data.DataLoader(stream, batch_size=16, num_workers=2, collate_fn=collate,
                                         persistent_workers=True, prefetch_factor=3)
    for epoch in (0, 1):  # persistent workers see the new epoch
        ours.set_epoch(epoch)
        stream.set_epoch(epoch)
        expected = list(ours)
        got = list(theirs)
        assert len(got) == len(expected) == 12
        assert all(torch.equal(v, e["vis"]) and torch.equal(i, e["ir"]) for (v, i), e in zip(got, expected))
    stream.set_epoch(1, skip=5)
    ours.set_epoch(1)
    assert all(torch.equal(v, e["vis"]) for (v, _), e in zip(theirs, list(ours)[5:]))


@pytest.mark.parametrize("subset", [None, corpus.Subset(best=90)])
def test_the_chunk_sampler_covers_every_patch_once_and_keeps_to_chunks(sample_corpus, subset):
    url = sample_corpus[0]
    data = corpus.PatchDataset([url, url], in_memory=False, cache_chunks=4, subset=subset)
    sampler = corpus.ChunkSampler(data, seed=4)
    sampler.set_epoch(1)
    order = list(sampler)
    assert sorted(order) == list(range(len(data)))  # every patch once
    assert order != sorted(order)  # shuffled
    again = corpus.ChunkSampler(data, seed=4)
    again.set_epoch(1)
    assert list(again) == order
    reads = []
    original = data.corpora.read
    data.corpora.read = lambda block, fields: (reads.append(block), original(block, fields))[1]
    for batch in torch.utils.data.DataLoader(data, batch_size=10, sampler=sampler):
        pass
    chunks = len(data.corpora.blocks())
    assert len(reads) == chunks  # each chunk read once: the cache of 4 holds a buffer of 4
    reads.clear()
    for batch in torch.utils.data.DataLoader(data, batch_size=10, shuffle=True):
        pass
    assert len(reads) > 3 * chunks  # what a plain shuffle costs: chunks read again and again
    shares = [set(corpus.ChunkSampler(data, seed=4, rank=r, world=2)) for r in (0, 1)]
    assert not shares[0] & shares[1] and abs(len(shares[0]) - len(shares[1])) == 0


@pytest.mark.parametrize("weights", [[1, 0.5], [0.5, 1], [1, 1.5]])
def test_fractional_weights_give_their_share_in_expectation_even_for_one_chunk_corpora(tmp_path, weights, engine):
    """Issue 30: with one-chunk corpora, [1, 0.5] never showed the second corpus and 1.5 acted as
    1. Over many epochs each corpus must give weight x its patches per epoch on average."""
    from crossfuse.corpus.reading import Corpora, plan_epoch

    from crossfuse import manifest
    from crossfuse.align import BuildParams, pack
    from tests.helpers import SAMPLE_TARGET

    url = str(tmp_path / "one-chunk.zarr")
    pack(dataset=manifest.load(str(SAMPLE_TARGET)), out=url, params=BuildParams(patch=64, stride=128, chunk=4096),
         engine=engine)
    corpora = Corpora([url, url], weights)
    assert len(corpora.blocks()) == 2  # one chunk each
    n = corpora.lengths[0]
    counts = np.zeros(2)
    epochs = 400
    for epoch in range(epochs):
        plan = plan_epoch(corpora, seed=1, epoch=epoch, batch_size=1, drop_last=False)
        blocks = [plan.blocks[b] for b in plan.block]
        counts += np.bincount([b.corpus for b in blocks], minlength=2)
    share = counts / (epochs * n)
    assert share == pytest.approx(weights, abs=0.08), share
