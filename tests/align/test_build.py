"""The pipeline end to end on the bundled sample, against the plain serial oracle."""

import dataclasses

import numpy as np
import pytest
import zarr

from crossfuse.align import BuildParams, build, describe, pack, tasks, verify
from crossfuse.errors import ParameterError, StoreError, StoreExistsError
from crossfuse.schema import ARRAYS, PARTIAL_GROUP, open_corpus
from tests.helpers import SAMPLE_PARAMS, crash_writes_at, plain_alignment, plain_lut, plain_patches


def _arrays(url):
    g = zarr.open_group(url, mode="r")
    return {name: g[name][...] for name in ARRAYS}


@pytest.fixture(scope="module")
def oracle(sample_target, sample_aux):
    p = SAMPLE_PARAMS
    return plain_alignment(sample_target, sample_aux, p["patch"], p["stride"], p["k"])


def test_build_matches_the_plain_procedure(sample_corpus, oracle, sample_aux):
    url, summary = sample_corpus
    tmeans, chosen, dist, _ = oracle
    arrays = _arrays(url)
    meta = zarr.open_group(url, mode="r").attrs["crossfuse"]
    assert np.allclose(meta["target"]["means"], tmeans, atol=1e-9)
    assert [(s, y, x) for s, (y, x) in zip(arrays["source"], arrays["origin"])] == [(c[0], c[1], c[2]) for c in chosen]
    assert np.allclose(arrays["distance"], dist, atol=1e-3)
    assert np.allclose(arrays["means"], [c[3].reshape(-1, 3).mean(0) for c in chosen], atol=1e-4)
    luts = [plain_lut(g) for g in meta["gamma"]]
    expected_vis = np.stack([np.stack([luts[ch][c[3][..., ch]] for ch in range(3)]) for c in chosen])
    assert np.array_equal(arrays["vis"], expected_vis)
    assert np.array_equal(arrays["ir"], np.stack([c[4][None] for c in chosen]))
    after = arrays["vis"].reshape(len(chosen), 3, -1).astype(np.float64).mean(axis=(0, 2))
    assert np.allclose(after, meta["means_after"], atol=1e-9)
    assert np.all(np.abs(after - tmeans) < 0.02)
    assert meta["complete"] and meta["counts"]["patches"] == SAMPLE_PARAMS["k"]
    assert [s["id"] for s in meta["sources"]] == [p.id for p in sample_aux.pairs]
    assert summary.gamma == tuple(meta["gamma"])


def test_plain_zarr_reads_every_chunk(sample_corpus):
    url, _ = sample_corpus
    g = zarr.open_group(url, mode="r")
    assert PARTIAL_GROUP not in g and set(g.array_keys()) == set(ARRAYS)
    vis = g["vis"]
    assert vis.chunks[0] == SAMPLE_PARAMS["chunk"] and vis.nchunks == -(-vis.shape[0] // vis.chunks[0])
    total = 0
    for start in range(0, vis.shape[0], vis.chunks[0]):
        block = vis[start:start + vis.chunks[0]]
        assert block.any()
        total += len(block)
    assert total == vis.shape[0]
    report = verify(url)
    assert report.ok and report.chunks_read == vis.nchunks and report.sources_checked == 24


def test_builds_are_deterministic_across_worker_counts(tmp_path, sample_corpus, sample_target, sample_aux,
                                                       sample_params):
    from crossfuse.align import EngineConfig

    out = str(tmp_path / "again.zarr")
    build(target=sample_target, aux=sample_aux, out=out, params=sample_params,
          engine=EngineConfig(workers=1, batch=5))
    a, b = _arrays(sample_corpus[0]), _arrays(out)
    assert all(np.array_equal(a[n], b[n]) for n in ARRAYS)


def test_existing_store_needs_overwrite(sample_corpus, sample_target, sample_aux, sample_params, engine, tmp_path):
    with pytest.raises(StoreExistsError, match="--overwrite"):
        build(target=sample_target, aux=sample_aux, out=sample_corpus[0], params=sample_params, engine=engine)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    with pytest.raises(StoreExistsError, match="not a crossfuse corpus"):
        build(target=sample_target, aux=sample_aux, out=str(foreign), params=sample_params, engine=engine,
              overwrite=True)
    assert (foreign / "keep.txt").read_text() == "precious"


def test_interrupted_build_resumes_without_redoing_work(tmp_path, monkeypatch, sample_corpus, sample_target,
                                                      sample_aux, sample_params, engine):
    out = str(tmp_path / "resume.zarr")
    real_write, real_scan = tasks.write_chunk, tasks.scan_batch
    log = tmp_path / "calls.txt"  # Dask pickles the wrappers, so they report through a file

    crash_writes_at(monkeypatch, 2 * sample_params.chunk)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=engine)
    with pytest.raises(StoreError, match="incomplete"):
        open_corpus(out)
    written = {int(k) for k in zarr.open_group(out)[PARTIAL_GROUP].attrs.get("written", {})}
    assert 2 not in written

    def counting_write(url, role, start, stop, *args):
        with open(log, "a") as fh:
            fh.write(f"write {start // sample_params.chunk}\n")
        return real_write(url, role, start, stop, *args)

    def counting_scan(*args, **kwargs):
        with open(log, "a") as fh:
            fh.write("scan\n")
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(tasks, "write_chunk", counting_write)
    monkeypatch.setattr(tasks, "scan_batch", counting_scan)
    summary = build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=engine)
    calls = log.read_text().split("\n") if log.exists() else []
    assert summary.resumed and "scan" not in calls
    n_chunks = -(-sample_params.k // sample_params.chunk)
    assert sorted(int(c.split()[1]) for c in calls if c.startswith("write")) == sorted(set(range(n_chunks)) - written)
    a, b = _arrays(sample_corpus[0]), _arrays(out)
    assert all(np.array_equal(a[n], b[n]) for n in ARRAYS)


def test_unfinished_store_with_other_arguments_is_not_clobbered(tmp_path, monkeypatch, sample_target, sample_aux,
                                                               sample_params, engine):
    out = str(tmp_path / "other.zarr")

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(tasks, "write_chunk", crash)
    with pytest.raises(RuntimeError):
        build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=engine)
    monkeypatch.undo()
    other = dataclasses.replace(sample_params, stride=100)
    with pytest.raises(StoreError, match=r"other inputs or parameters \(stride: 64 there, 100 now\).*--overwrite"):
        build(target=sample_target, aux=sample_aux, out=out, params=other, engine=engine)
    summary = build(target=sample_target, aux=sample_aux, out=out, params=other, engine=engine, overwrite=True)
    assert summary.counts.patches == sample_params.k and not summary.resumed


def test_a_build_refused_by_k_keeps_its_scan_for_the_corrected_command(tmp_path, monkeypatch, sample_corpus,
                                                                     sample_target, sample_aux, sample_params,
                                                                     engine):
    out = str(tmp_path / "k.zarr")
    too_many = dataclasses.replace(sample_params, k=100_000)
    with pytest.raises(ParameterError, match=r"lower -k .* \(the scan is kept"):
        build(target=sample_target, aux=sample_aux, out=out, params=too_many, engine=engine)
    log = tmp_path / "scans.txt"
    real_scan = tasks.scan_batch

    def counting_scan(*args, **kwargs):
        with open(log, "a") as fh:
            fh.write("scan\n")
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(tasks, "scan_batch", counting_scan)
    summary = build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=engine)
    assert summary.resumed and not log.exists()  # the corrected command reused the scan
    a, b = _arrays(sample_corpus[0]), _arrays(out)
    assert all(np.array_equal(a[n], b[n]) for n in ARRAYS)


def test_an_empty_dataset_is_refused_before_anything_is_written(tmp_path, sample_target, sample_aux, engine):
    from crossfuse.errors import ManifestError
    from crossfuse.manifest import Manifest

    empty = Manifest(name="empty", root=sample_target.root, pairs=(), origin="empty.json")
    out = tmp_path / "never.zarr"
    with pytest.raises(ManifestError, match="empty.json lists no image pairs"):
        build(target=empty, aux=sample_aux, out=str(out), engine=engine)
    with pytest.raises(ManifestError, match="no image pairs"):
        pack(dataset=empty, out=str(out), engine=engine)
    assert not out.exists()


def test_pack_writes_every_patch_unchanged(tmp_path, sample_target, engine):
    out = str(tmp_path / "packed.zarr")
    summary = pack(dataset=sample_target, out=out, params=BuildParams(patch=64, stride=100, chunk=16), engine=engine)
    everything = plain_patches(sample_target, 64, 100)
    arrays = _arrays(out)
    assert summary.counts.patches == len(everything) == len(arrays["vis"])
    assert np.array_equal(arrays["vis"], np.stack([p[3].transpose(2, 0, 1) for p in everything]))
    assert np.array_equal(arrays["ir"], np.stack([p[4][None] for p in everything]))
    assert not arrays["distance"].any()
    d = describe(out).record
    assert d.kind == "packed" and d.gamma == (1.0, 1.0, 1.0) and verify(out).ok


def test_memory_url_store(sample_target, sample_aux, engine):
    out = "memory://crossfuse-test/corpus.zarr"
    summary = build(target=sample_target, aux=sample_aux, out=out,
                    params=BuildParams(patch=64, stride=128, k=40, chunk=16), engine=engine)
    group, record = open_corpus(out)
    assert group["vis"].shape == (40, 3, 64, 64) and record.gamma == summary.gamma


def test_ivf_index_records_recall(tmp_path, sample_target, sample_aux, sample_params, engine):
    out = str(tmp_path / "ivf.zarr")
    params = dataclasses.replace(sample_params, index="ivf", nlist=8, nprobe=8)
    summary = build(target=sample_target, aux=sample_aux, out=out, params=params, engine=engine)
    record = describe(out).record
    assert record.params.index == "ivf" and summary.recall == pytest.approx(record.ivf_recall)
    assert 0.9 <= summary.recall <= 1.0


def test_build_on_an_existing_cluster(tmp_path, sample_corpus, sample_target, sample_aux, sample_params):
    import distributed

    from crossfuse.align import EngineConfig

    out = str(tmp_path / "cluster.zarr")
    with distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1, protocol="tcp",
                                  dashboard_address=":0") as cluster:
        build(target=sample_target, aux=sample_aux, out=out, params=sample_params,
              engine=EngineConfig(scheduler=cluster.scheduler_address, batch=5))
    a, b = _arrays(sample_corpus[0]), _arrays(out)
    assert all(np.array_equal(a[n], b[n]) for n in ARRAYS)


def test_older_stores_open_and_damaged_records_are_named(tmp_path, sample_corpus):
    """A store written before the record grew its resume and integrity fields (no scan_fingerprint,
    inputs, gamma_reachable, chunks, record_sha256) opens and verifies (saying it has no digests);
    a field of the wrong type is refused by name."""
    import shutil

    old = tmp_path / "old.zarr"
    shutil.copytree(sample_corpus[0], old)
    g = zarr.open_group(str(old), mode="r+")
    attrs = dict(g.attrs["crossfuse"])
    for key in ("scan_fingerprint", "inputs", "gamma_reachable", "chunks", "record_sha256"):
        attrs.pop(key)
    g.attrs["crossfuse"] = attrs
    _, record = open_corpus(str(old))
    assert record.inputs is None and record.gamma_reachable is None and record.counts.patches == SAMPLE_PARAMS["k"]
    report = verify(str(old))
    assert report.ok and "records no digests" in report.notes[0]
    g.attrs["crossfuse"] = {**attrs, "gamma": "1.0"}
    with pytest.raises(StoreError, match=r"'gamma' = '1.0', expected list.*Rebuild"):
        open_corpus(str(old))
    g.attrs["crossfuse"] = {**attrs, "complete": "yes"}
    with pytest.raises(StoreError, match="incomplete"):
        open_corpus(str(old))


def test_the_engine_caps_zarr_threads_only_while_it_runs(tmp_path, sample_target, engine):
    before = zarr.config.get("threading.max_workers")
    pack(dataset=sample_target, out=str(tmp_path / "p.zarr"), params=BuildParams(patch=64, stride=200, chunk=16),
         engine=engine)
    assert zarr.config.get("threading.max_workers") == before


def test_ivf_records_the_lists_it_used(tmp_path, sample_target, sample_aux, sample_params, engine):
    """752 auxiliary patches allow at most 752 // 39 = 19 lists: asking for 64 uses 19, and the
    store says 19."""
    out = str(tmp_path / "ivf64.zarr")
    params = dataclasses.replace(sample_params, index="ivf", nlist=64, nprobe=64)
    build(target=sample_target, aux=sample_aux, out=out, params=params, engine=engine)
    assert describe(out).record.params.nlist == 752 // 39


def test_a_resumed_pack_does_not_mix_an_image_changed_since_its_scan(tmp_path, monkeypatch, engine):
    """Issue 30 FAIL 8: a folder dataset's fingerprint covers ids and paths, not content. A pack
    killed after scanning, whose already-scanned image then changes, must not resume into old
    and new pixels: it starts over (with a warning) and equals a fresh pack of the new images."""
    import shutil

    from PIL import Image

    from crossfuse import manifest
    from crossfuse.align import BuildParams, pack
    from tests.helpers import MANIFESTS, crash_writes_at

    sample = manifest.load(str(MANIFESTS / "sample-target.json"))
    root = tmp_path / "pairs"
    for sub in ("ir", "vis"):
        (root / sub).mkdir(parents=True)
    for pair in sample.pairs[:4]:
        shutil.copy(sample.url(pair.ir), root / "ir" / f"{pair.id}.png")
        shutil.copy(sample.url(pair.vis), root / "vis" / f"{pair.id}.png")
    params = BuildParams(patch=64, stride=96, chunk=16)
    out = str(tmp_path / "p.zarr")
    crash_writes_at(monkeypatch, 16)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pack(dataset=manifest.load(str(root)), out=out, params=params, engine=engine)
    monkeypatch.undo()
    first = sorted((root / "vis").iterdir())[0]
    Image.fromarray(255 - np.asarray(Image.open(first).convert("RGB"))).save(first)  # changed after its scan
    with pytest.warns(UserWarning, match="changed since the interrupted build scanned them"):
        resumed = pack(dataset=manifest.load(str(root)), out=out, params=params, engine=engine)
    fresh = pack(dataset=manifest.load(str(root)), out=str(tmp_path / "fresh.zarr"), params=params, engine=engine)
    assert not resumed.resumed
    a, b = _arrays(out), _arrays(str(tmp_path / "fresh.zarr"))
    assert all(np.array_equal(a[n], b[n]) for n in ("vis", "ir", "source", "origin"))


def test_a_wrong_dataset_root_is_named_with_its_flag_before_anything_is_written(tmp_path, engine):
    """Issue 30 (tour): a build whose every pair fails to read said "pass --skip-bad" and left a
    _partial store that later commands called resumable."""
    from click.testing import CliRunner

    from crossfuse.cli.align import main as align_main
    from tests.helpers import SAMPLE_AUX, SAMPLE_TARGET

    out = tmp_path / "c.zarr"
    r = CliRunner().invoke(align_main, ["build", "--target", str(SAMPLE_TARGET), "--aux", str(SAMPLE_AUX),
                                        "--aux-root", str(tmp_path / "nowhere"), "--out", str(out), "-k", "4", "-q"])
    assert r.exit_code == 1 and "does not exist" in r.output and "--aux-root" in r.output
    assert "--skip-bad" not in r.output and not out.exists()
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(align_main, ["pack", "--manifest", str(SAMPLE_TARGET), "--root", str(tmp_path / "empty"),
                                        "--out", str(out), "-q"])
    assert r.exit_code == 1 and "none of the" in r.output and "--root" in r.output and not out.exists()
