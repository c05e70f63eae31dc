"""Issue 30, FAIL 1 and 2: every reader checks each chunk's recorded sha256 as it reads it (the
loader, train, export), and the chunk cache never serves a cached chunk that was edited, swapped
or cut short. Each case edits a real corpus built from the bundled sample."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from crossfuse import corpus
from crossfuse.errors import StoreError
from crossfuse.verified import ChunkDigestError


def _copy(sample_corpus, tmp_path) -> str:
    url = str(tmp_path / "c.zarr")
    shutil.copytree(sample_corpus[0], url)
    return url


def _chunk_files(url: str, name: str) -> list[str]:
    root = os.path.join(url, name, "c")
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


def _edit_in_place(path: str) -> None:
    """Change bytes near the end of a chunk object, keeping its size (the codec's frame may still
    decode; what is served must still be refused)."""
    data = bytearray(open(path, "rb").read())
    for i in range(len(data) - 40, len(data) - 8):
        data[i] ^= 0x5A
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("in_memory", [False, True])
def test_the_loader_refuses_a_chunk_edited_in_place(sample_corpus, tmp_path, in_memory):
    url = _copy(sample_corpus, tmp_path)
    path = _chunk_files(url, "vis")[1]
    size = os.path.getsize(path)
    _edit_in_place(path)
    assert os.path.getsize(path) == size  # the size check alone passes
    loader = corpus.PatchLoader([url], batch_size=8, seed=0, in_memory=in_memory)
    loader.set_epoch(0)
    with pytest.raises(ChunkDigestError, match=r"array 'vis' chunk 1 \(rows 48:96\) is not the chunk that was written"):
        list(loader)


def test_train_and_export_refuse_an_edited_chunk(sample_corpus, tmp_path):
    pytest.importorskip("h5py")
    from crossfuse.align.h5 import export
    from crossfuse.fusion import trainer
    from crossfuse.fusion.config import from_dict

    url = _copy(sample_corpus, tmp_path)
    _edit_in_place(_chunk_files(url, "ir")[0])
    with pytest.raises(ChunkDigestError, match="array 'ir' chunk 0"):
        export(url, str(tmp_path / "x.h5"))
    assert not (tmp_path / "x.h5").exists()
    cfg = from_dict({"model": "sdnet", "epochs": 1, "steps_per_epoch": 0, "batch_size": 8})
    with pytest.raises(ChunkDigestError):
        trainer.train(data=[url], out=str(tmp_path / "run"), cfg=cfg)
    assert issubclass(ChunkDigestError, StoreError)


def test_the_cache_refetches_an_edited_swapped_or_truncated_cached_chunk(s3, sample_corpus, tmp_path):
    s3.put(sample_corpus[0], "crossfuse/digests.zarr", recursive=True)
    url = "s3://crossfuse/digests.zarr"
    cache = tmp_path / "cache"

    def read_all():
        loader = corpus.PatchLoader([url], batch_size=16, seed=0, fields=("vis", "ir"), in_memory=False,
                                    cache_dir=str(cache))
        loader.set_epoch(0)
        return loader, [b["vis"] for b in loader]

    _, truth = read_all()
    cached = sorted(p for p in cache.rglob("*") if p.is_file() and "/vis/c/" in str(p))
    assert len(cached) >= 3
    _edit_in_place(str(cached[0]))                                     # edited in place
    cached[1].write_bytes(cached[1].read_bytes()[:-10])                # cut short
    cached[2].write_bytes(cached[-1].read_bytes()) if cached[2].stat().st_size == cached[-1].stat().st_size \
        else cached[2].write_bytes(cached[3].read_bytes())             # swapped for another cached chunk
    loader, again = read_all()
    assert all(torch.equal(a, b) for a, b in zip(truth, again))  # never served: fetched again, right pixels
    assert loader.corpora._groups[0].store._store.refetched == 3
