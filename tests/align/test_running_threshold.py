"""The aligned build's running threshold (issue 13): the auxiliary scan keeps only candidates that
can still be selected, whatever the batches and the order they finish in; the result is the
plain oracle's; the scratch holds about K patches; a crash mid-scan resumes with only the missing
batches; a smaller K reuses a scan and a larger one scans again."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest
import zarr

from crossfuse.align import BuildParams, EngineConfig, build, candidates, tasks
from crossfuse.align import store as _store
from crossfuse.schema import ARRAYS, PARTIAL_GROUP, STATS_GROUP
from tests.helpers import SAMPLE_PARAMS, crash_writes_at, plain_alignment


_SCAN = tasks.scan_candidates  # the real task, whatever a test wraps it in


def _arrays(url):
    g = zarr.open_group(url, mode="r")
    return {name: g[name][...] for name in ARRAYS}


def _scanned_log(monkeypatch, log, *, slow_first: int = 0, crash_at: int | None = None):
    """Wrap the auxiliary scan task: log each batch it scans (through a file: Dask pickles the
    wrapper), let the first ``slow_first`` batches finish last, crash at batch ``crash_at``."""
    real = _SCAN

    def wrapped(url, batch, *args, **kwargs):
        if crash_at is not None and batch == crash_at:
            time.sleep(1.0)  # the batches in flight with it finish first, as on a busy cluster
            raise RuntimeError("simulated crash")
        if batch < slow_first:
            time.sleep(0.4)
        with open(log, "a") as fh:
            fh.write(f"{batch}\n")
        return real(url, batch, *args, **kwargs)

    monkeypatch.setattr(tasks, "scan_candidates", wrapped)


def _logged(log) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


@pytest.mark.parametrize("batch", [1, 7])
def test_the_selection_is_the_oracles_whatever_the_batches_and_their_order(tmp_path, monkeypatch, sample_target,
                                                                            sample_aux, batch):
    k = 20  # far below the pool (752 patches): the threshold tightens and dead candidates are dropped
    _scanned_log(monkeypatch, tmp_path / "log", slow_first=2)  # the first batches finish last
    out = str(tmp_path / "a.zarr")
    summary = build(target=sample_target, aux=sample_aux, out=out, engine=EngineConfig(workers=2, batch=batch),
                    params=BuildParams(**{**SAMPLE_PARAMS, "k": k}))
    _, chosen, dist, _ = plain_alignment(sample_target, sample_aux, SAMPLE_PARAMS["patch"], SAMPLE_PARAMS["stride"], k)
    arrays = _arrays(out)
    assert [(s, y, x) for s, (y, x) in zip(arrays["source"], arrays["origin"])] == [c[:3] for c in chosen]
    assert np.allclose(arrays["distance"], dist, atol=1e-3)
    assert np.array_equal(arrays["ir"], np.stack([c[4][None] for c in chosen]))
    facts = summary.scratch
    assert facts["pool_patches"] == 752 and 0 <= facts["pairs_read_twice"] <= len(sample_aux.pairs)
    # Every blob kept is at least half live (so at most 2K), plus the batches in flight (4, each at
    # most K): the scratch follows K, not the pool.
    assert k <= facts["scratch_patches_peak"] <= 6 * k < 752 // 4
    if batch == 1:
        assert facts["compactions"] > 0


def _done(out: str, batches: int) -> set[int]:
    """Batches whose statistics are kept: in the checkpoint, or in their own blob."""
    merged = set(_store.read_batch(out, "pool", 0, ())[1]["batches"]) if _store.batch_done(out, "pool", 0) else set()
    own = {b for b in range(batches) if _store.batch_done(out, "aux", b)}
    assert not merged & own  # a batch's own blob is deleted once the checkpoint holds it
    return merged | own


@pytest.mark.parametrize("checkpoint", [False, True])
def test_a_crash_mid_scan_resumes_with_only_the_missing_batches(tmp_path, monkeypatch, sample_target, sample_aux,
                                                                sample_params, sample_corpus, checkpoint):
    if checkpoint:  # merge the statistics into the checkpoint after every batch
        monkeypatch.setattr(candidates, "CHECKPOINT_MIN", 0)
    engine = EngineConfig(workers=2, batch=1)
    out = str(tmp_path / "a.zarr")
    _scanned_log(monkeypatch, tmp_path / "first", crash_at=9)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=engine)
    pairs = len(sample_aux.pairs)  # one batch per pair
    kept = _done(out, pairs)
    assert 9 not in kept and 0 < len(kept) < pairs
    assert _store.batch_done(out, "pool", 0) == checkpoint
    # Candidate pixels on disk: about K patches, far below the pool's 752 (compressed, too).
    folder = f"{out}/{PARTIAL_GROUP}/{_store.CANDIDATES}"
    held = sum(len(_store.pixel_keys(out, _store.CANDIDATES, int(f[:5]))) for f in os.listdir(folder))
    assert held <= sample_params.k + sample_params.k // 8 + 5 * 64
    log = tmp_path / "second"
    _scanned_log(monkeypatch, log)
    summary = build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=engine)
    assert summary.resumed and sorted(_logged(log)) == sorted(set(range(pairs)) - kept)
    a, b = _arrays(out), _arrays(sample_corpus[0])
    assert all(np.array_equal(a[n], b[n]) for n in ARRAYS)
    assert summary.record.w1 == sample_corpus[1].record.w1 and summary.record.gamma == sample_corpus[1].record.gamma


def test_a_damaged_batch_blob_is_scanned_again_and_the_corpus_is_unchanged(tmp_path, monkeypatch, sample_target,
                                                                             sample_aux, sample_params,
                                                                             sample_corpus):
    engine = EngineConfig(workers=2, batch=1)
    out = str(tmp_path / "a.zarr")
    _scanned_log(monkeypatch, tmp_path / "first", crash_at=9)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=engine)
    kept = sorted(_done(out, len(sample_aux.pairs)))
    damaged = _store.batch_url(out, "aux", kept[0])
    with open(damaged, "r+b") as fh:  # truncated in the middle, as a full disk or a torn copy leaves it
        fh.truncate(os.path.getsize(damaged) // 2)
    log = tmp_path / "second"
    _scanned_log(monkeypatch, log)
    summary = build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=engine)
    assert kept[0] in _logged(log) and not set(kept[1:]) & set(_logged(log))
    a, b = _arrays(out), _arrays(sample_corpus[0])
    assert all(np.array_equal(a[n], b[n]) for n in ARRAYS)
    assert summary.record.w1 == sample_corpus[1].record.w1


def test_a_larger_k_scans_again_and_a_smaller_one_reuses_the_scan(tmp_path, monkeypatch, sample_target, sample_aux,
                                                                   sample_params, engine, sample_corpus):
    out = str(tmp_path / "a.zarr")
    crash_writes_at(monkeypatch, 0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(target=sample_target, aux=sample_aux, out=out, engine=engine,
              params=dataclasses.replace(sample_params, k=50))
    monkeypatch.undo()
    larger = tmp_path / "larger"
    _scanned_log(monkeypatch, larger)
    crash_writes_at(monkeypatch, 0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=engine)
    batches = -(-len(sample_aux.pairs) // engine.batch)
    assert sorted(_logged(larger)) == list(range(batches))  # scanned for K 50: every batch again for K 200
    monkeypatch.undo()
    smaller = tmp_path / "smaller"
    _scanned_log(monkeypatch, smaller)
    summary = build(target=sample_target, aux=sample_aux, out=out, engine=engine,
                    params=dataclasses.replace(sample_params, k=120))
    assert summary.resumed and not _logged(smaller)
    fresh = build(target=sample_target, aux=sample_aux, out=str(tmp_path / "fresh.zarr"), engine=engine,
                  params=dataclasses.replace(sample_params, k=120))
    a, b = _arrays(out), _arrays(str(tmp_path / "fresh.zarr"))
    assert all(np.array_equal(a[n], b[n]) for n in ARRAYS)
    assert summary.record.w1 == fresh.record.w1


def test_the_pool_sample_is_uniform_and_the_same_whatever_the_batches(tmp_path, monkeypatch, sample_target,
                                                                       sample_aux, sample_params, sample_corpus):
    monkeypatch.setattr(candidates, "POOL_SAMPLE", 100)
    samples = []
    for batch in (1, 5):
        out = str(tmp_path / f"b{batch}.zarr")
        build(target=sample_target, aux=sample_aux, out=out, params=sample_params,
              engine=EngineConfig(workers=2, batch=batch))
        stats = zarr.open_group(out, mode="r")[STATS_GROUP]
        assert stats.attrs["pool_patches"] == 752
        samples.append(stats["pool_means"][...])
    assert samples[0].shape == (100, 3) and np.array_equal(samples[0], samples[1])
    from crossfuse.align.report import _label

    assert _label("pool", samples[0], 752) == "pool (a sample of 100 of 752)"
    # Below POOL_SAMPLE the whole pool is kept, in pool order; the sample is 100 of those rows,
    # spread over the pool rather than its first batches.
    pool = zarr.open_group(sample_corpus[0], mode="r")[STATS_GROUP]["pool_means"][...]
    assert pool.shape == (752, 3)
    rows = [int(np.flatnonzero((pool == m).all(axis=1))[0]) for m in samples[0]]
    assert rows == sorted(rows) and rows[0] < 752 // 8 and rows[-1] > 752 * 7 // 8


def test_candidate_pixels_round_trip_and_dropping_patches_keeps_the_others_bit_for_bit(tmp_path, sample_corpus):
    url = str(tmp_path / "s.zarr")
    zarr.open_group(url, mode="w").create_group(PARTIAL_GROUP)
    g = zarr.open_group(sample_corpus[0], mode="r")
    vis, ir = g["vis"][:60], g["ir"][:60]
    key = np.arange(60, dtype=np.int64) * 3
    _store.write_pixels(url, _store.CANDIDATES, 4, key, vis, ir)
    held, v, i = _store.read_pixels(url, _store.CANDIDATES, 4)
    assert np.array_equal(held, key) and np.array_equal(v, vis) and np.array_equal(i, ir)
    blob = os.path.getsize(_store.batch_url(url, _store.CANDIDATES, 4))
    assert blob < 0.8 * (vis.nbytes + ir.nbytes)  # compressed
    keep = np.zeros(60, bool)
    keep[[1, 7, 8, 59]] = True
    assert np.array_equal(_store.keep_pixels(url, _store.CANDIDATES, 4, keep), key[keep])
    held, v, i = _store.read_pixels(url, _store.CANDIDATES, 4, np.array([3, 0]))
    assert np.array_equal(held, key[[59, 1]]) and np.array_equal(v, vis[[59, 1]]) and np.array_equal(i, ir[[59, 1]])
    assert os.path.getsize(_store.batch_url(url, _store.CANDIDATES, 4)) < blob / 5
