"""Object storage end to end: inputs read from and the corpus written to ``s3://`` on a local
S3-compatible server (moto's, a test extra) through fsspec/s3fs; verify and the trainer read the
corpus from there, and its arrays equal a local build's."""

import json

import numpy as np
import pytest
import zarr

from crossfuse import manifest
from crossfuse.schema import ARRAYS, open_corpus
from tests.helpers import SAMPLE_AUX, SAMPLE_PARAMS, SAMPLE_TARGET

moto_server = pytest.importorskip("moto.server")
pytest.importorskip("s3fs")
pytestmark = pytest.mark.slow


def _upload(fs, local_manifest: str, prefix: str) -> str:
    """Copy a manifest's pairs to s3://crossfuse/<prefix>/ and write a manifest whose root is there."""
    m = manifest.load(local_manifest)
    for pair in m.pairs:
        for rel in (pair.ir, pair.vis):
            fs.put_file(m.url(rel), f"crossfuse/{prefix}/{rel}")
    doc = {**m.to_json(), "root": f"s3://crossfuse/{prefix}"}
    fs.pipe_file(f"crossfuse/{prefix}.json", json.dumps(doc).encode())
    return f"s3://crossfuse/{prefix}.json"


def test_build_verify_and_train_on_s3(s3, sample_corpus, tmp_path):
    from click.testing import CliRunner

    from crossfuse.cli.align import main as align_main
    from crossfuse.fusion import trainer
    from crossfuse.fusion.config import TrainConfig
    from crossfuse.fusion.network import NetworkConfig

    target, aux = _upload(s3, str(SAMPLE_TARGET), "target"), _upload(s3, str(SAMPLE_AUX), "aux")
    out = "s3://crossfuse/corpora/sample.zarr"
    p = SAMPLE_PARAMS
    r = CliRunner().invoke(align_main, ["build", "-t", target, "-a", aux, "-o", out, "-k", str(p["k"]), "-p",
                                        str(p["patch"]), "-s", str(p["stride"]), "--chunk", str(p["chunk"]), "-j",
                                        "2", "-q"])
    assert r.exit_code == 0, r.output
    local, remote = zarr.open_group(sample_corpus[0], mode="r"), zarr.open_group(out, mode="r")
    assert all(np.array_equal(local[n][...], remote[n][...]) for n in ARRAYS)
    r = CliRunner().invoke(align_main, ["verify", out])  # chunk digests, and the sources' sha256 on S3
    assert r.exit_code == 0 and "24 source files checked" in r.output and "OK" in r.output, r.output
    assert open_corpus(out)[1].aux.root == "s3://crossfuse/aux"
    tiny = NetworkConfig(dim=8, heads=2, encoder_blocks=1, decoder_blocks=1, detail_nodes=1)
    result = trainer.train(data=[out], out=str(tmp_path / "run"),
                           cfg=TrainConfig(epochs=1, phase1_epochs=1, batch_size=4, steps_per_epoch=2, network=tiny))
    assert result.steps == 2 and np.isfinite(result.final_loss)
    s3.rm("crossfuse/corpora/sample.zarr/ir/c/1", recursive=True)  # a lost chunk on S3 is found too
    r = CliRunner().invoke(align_main, ["verify", out, "--no-sources"])
    assert r.exit_code == 1 and "array 'ir' chunk 1 (rows 48:96) is missing" in r.output


def test_a_remote_corpus_is_read_once_through_the_local_chunk_cache(s3, sample_corpus, tmp_path, monkeypatch):
    import s3fs
    import torch

    from crossfuse import corpus

    s3.put(sample_corpus[0], "crossfuse/cached.zarr", recursive=True)
    url = "s3://crossfuse/cached.zarr"
    fetched: list[str] = []
    original = s3fs.S3FileSystem._cat_file

    async def counting(self, path, *args, **kwargs):
        fetched.append(path)
        return await original(self, path, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", counting)

    def epoch(loader, e):
        fetched.clear()
        loader.set_epoch(e)
        batches = list(loader)
        return batches, [p for p in fetched if "/c/" in p]  # chunk objects fetched from S3

    local = corpus.PatchLoader([sample_corpus[0]], batch_size=16, seed=0, fields=("vis", "ir"), in_memory=False)
    cached = corpus.PatchLoader([url], batch_size=16, seed=0, fields=("vis", "ir"), in_memory=False,
                                cache_dir=str(tmp_path / "cache"))
    first, chunks_first = epoch(cached, 0)
    second, chunks_second = epoch(cached, 1)
    assert len(chunks_first) == 2 * 5 and chunks_second == []  # vis and ir, 5 chunks each; then none
    assert cached.corpora.cache_stats() == {"hits": 10, "misses": 10}
    local.set_epoch(1)
    assert all(torch.equal(a["vis"], b["vis"]) for a, b in zip(second, local))  # the same pixels
    # Without the cache every epoch fetches every chunk again.
    plain = corpus.PatchLoader([url], batch_size=16, seed=0, fields=("vis", "ir"), in_memory=False)
    assert len(epoch(plain, 0)[1]) == len(epoch(plain, 1)[1]) == 10
    # A size limit keeps the folder under it (least recently used dropped), and reads stay right.
    limit = 600_000
    small = corpus.PatchLoader([url], batch_size=16, seed=0, fields=("vis", "ir"), in_memory=False,
                               cache_dir=str(tmp_path / "small"), cache_bytes=limit)
    small_batches, _ = epoch(small, 1)
    held = sum(p.stat().st_size for p in (tmp_path / "small").rglob("*") if p.is_file())
    assert 0 < held <= limit and all(torch.equal(a["vis"], b["vis"]) for a, b in zip(small_batches, second))
