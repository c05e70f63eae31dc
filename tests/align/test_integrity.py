"""Fault injection on real stores: no corruption goes unnoticed, no zeros are ever trained on.
Zarr reads a missing chunk as its fill value; the store records a digest of every chunk and of
its attributes, and verify, resume and the loader check them."""

import json
import shutil

import numpy as np
import pytest
import zarr

from crossfuse.align import build, verify
from crossfuse.errors import StoreError
from crossfuse.schema import ARRAYS, open_corpus
from tests.helpers import crash_writes_at


@pytest.fixture
def store(tmp_path, sample_corpus):
    """A copy of the session's finished sample corpus, to damage."""
    out = tmp_path / "copy.zarr"
    shutil.copytree(sample_corpus[0], out)
    return out


def _chunk(store, name, index):
    arr = zarr.open_group(str(store), mode="r")[name]
    return store / name / arr.metadata.encode_chunk_key((index,) + (0,) * (arr.ndim - 1))


def _problems(store):
    report = verify(str(store), check_sources=False)
    return report.ok, " | ".join(report.problems)


def test_a_sound_store_verifies_with_every_digest(store):
    ok, problems = _problems(store)
    assert ok, problems
    record = open_corpus(str(store))[1]
    assert set(record.chunks) == set(ARRAYS) and len(record.chunks["vis"]) == 5  # 200 rows in chunks of 48
    assert record.record_sha256 == record.content_sha256()


def test_a_deleted_chunk_is_found_by_verify_and_refused_by_the_loader(store):
    from crossfuse.corpus.reading import Corpora

    _chunk(store, "ir", 2).unlink()
    ok, problems = _problems(store)
    assert not ok and "array 'ir' chunk 2 (rows 96:144) is missing" in problems
    with pytest.raises(StoreError, match=r"is damaged: array 'ir' chunk 2 .* not trained on"):
        Corpora([str(store)])


@pytest.mark.parametrize("damage", ["swap", "flip", "zero origins", "edit gamma", "same-size garbage"])
def test_corruption_that_still_reads_is_found(store, damage):
    if damage == "swap":
        a, b = _chunk(store, "vis", 0), _chunk(store, "vis", 1)
        da, db = a.read_bytes(), b.read_bytes()
        a.write_bytes(db)
        b.write_bytes(da)
    elif damage == "flip":  # one byte flipped where the chunk still decompresses, to other pixels
        path = _chunk(store, "vis", 1)
        data = bytearray(path.read_bytes())
        arr = zarr.open_group(str(store), mode="r")["vis"]
        before = arr[48:96]
        for pos in range(len(data) // 2, len(data)):
            data[pos] ^= 0x01
            path.write_bytes(bytes(data))
            try:
                changed = not np.array_equal(zarr.open_group(str(store), mode="r")["vis"][48:96], before)
            except Exception:
                changed = False
            if changed:
                break
            data[pos] ^= 0x01
        else:
            pytest.fail("no flip decoded to other pixels")
    elif damage == "zero origins":
        g = zarr.open_group(str(store), mode="r+")
        g["origin"][...] = 0
    elif damage == "edit gamma":
        g = zarr.open_group(str(store), mode="r+")
        g.attrs["crossfuse"] = {**g.attrs["crossfuse"], "gamma": [1.0, 1.0, 1.0]}
    else:
        path = _chunk(store, "ir", 3)
        path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    ok, problems = _problems(store)
    assert not ok, damage
    expected = "attributes were changed" if damage == "edit gamma" else "chunk"
    assert expected in problems, problems


def test_the_loader_names_an_undecodable_chunk(store):
    from crossfuse.corpus.reading import Block, Corpora

    path = _chunk(store, "vis", 3)
    path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))  # same size: passes the cheap check
    corpora = Corpora([str(store)], in_memory=False)
    # the chunk's digest is checked before zarr decodes it: named with its rows, before any pixel is used
    with pytest.raises(StoreError, match=r"copy.zarr: array 'vis' chunk 3 \(rows 144:192\) is not the chunk that was "
                                         r"written.* verify"):
        corpora.read(Block(corpus=0, start=144, stop=192))


def test_complete_must_be_the_boolean_true(store):
    g = zarr.open_group(str(store), mode="r+")
    g.attrs["crossfuse"] = {**g.attrs["crossfuse"], "complete": "no"}
    with pytest.raises(StoreError, match="incomplete"):
        open_corpus(str(store))


def test_a_resumed_build_rewrites_chunks_deleted_since(tmp_path, monkeypatch, sample_corpus, sample_target,
                                                      sample_aux, sample_params, engine):
    """Kill a build after some chunks, delete every IR chunk, rerun: the written list is not
    trusted for chunks that are gone, and the result equals an uninterrupted build."""
    out = tmp_path / "resume.zarr"
    crash_writes_at(monkeypatch, 3 * sample_params.chunk)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(target=sample_target, aux=sample_aux, out=str(out), params=sample_params, engine=engine)
    monkeypatch.undo()
    written = json.loads((out / "_partial" / "zarr.json").read_text())["attributes"]["written"]
    assert written  # some chunks were recorded as written ...
    shutil.rmtree(out / "ir" / "c")  # ... and then lost
    summary = build(target=sample_target, aux=sample_aux, out=str(out), params=sample_params, engine=engine)
    assert summary.resumed
    a, b = zarr.open_group(sample_corpus[0], mode="r"), zarr.open_group(str(out), mode="r")
    assert all(np.array_equal(a[n][...], b[n][...]) for n in ARRAYS)
    assert _problems(out)[0]
