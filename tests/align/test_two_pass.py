"""The aligned build's second pass (``--low-scratch``): the scan keeps no pixels, not even the candidates', only the
selected patches are read again (from the pairs holding them), a crash there resumes, and a
source that changed between the passes is an error naming it. The arrays equal the default
build's, which equal the plain oracle's (test_build)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import zarr

from crossfuse import manifest
from crossfuse.align import build, tasks
from crossfuse.align import store as _store
from crossfuse.errors import PairError
from crossfuse.schema import PARTIAL_GROUP


@pytest.fixture
def low(engine):
    import dataclasses

    return dataclasses.replace(engine, low_scratch=True)


def _scratch_bytes(url, role):
    folder = f"{url}/{PARTIAL_GROUP}/{role}"
    import os

    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) if os.path.isdir(folder) else 0


def test_a_crash_in_the_second_pass_resumes_and_the_scratch_follows_k(tmp_path, monkeypatch, sample_target,
                                                                       sample_aux, sample_params, low,
                                                                       sample_corpus):
    import os

    real = tasks.fetch_batch

    def crashing(url, batch, *args, **kwargs):
        if batch == 1:
            time.sleep(1.0)  # let the other batches finish first, as they would on a busy cluster
            raise RuntimeError("simulated crash")
        return real(url, batch, *args, **kwargs)

    monkeypatch.setattr(tasks, "fetch_batch", crashing)
    out = str(tmp_path / "a.zarr")
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=low)
    p = sample_params.patch
    # The auxiliary scan kept statistics only (no pixels): far below one patch's pixels per scanned patch.
    pool = sample_corpus[1].record.counts.aux_patches
    assert 0 < _scratch_bytes(out, "aux") < pool * 4 * p * p / 50
    assert _scratch_bytes(out, _store.CANDIDATES) == 0
    assert 0 < _scratch_bytes(out, _store.SELECTED) <= sample_params.k * 4 * p * p + 4096 * 4
    kept = [b for b in (0, 2) if _store.batch_done(out, _store.SELECTED, b)]
    assert kept and not _store.batch_done(out, _store.SELECTED, 1)
    done = set(kept)

    def only_missing(url, batch, *args, **kwargs):
        if batch in done:
            raise AssertionError(f"fetch batch {batch} was kept but read again")
        return real(url, batch, *args, **kwargs)

    monkeypatch.setattr(tasks, "fetch_batch", only_missing)
    summary = build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=low)
    assert summary.resumed
    a, b = zarr.open_group(out, mode="r"), zarr.open_group(sample_corpus[0], mode="r")
    for name in ("vis", "ir", "origin", "distance"):
        assert np.array_equal(a[name][...], b[name][...]), name
    assert summary.record.w1 == sample_corpus[1].record.w1
    assert not os.path.exists(f"{out}/{PARTIAL_GROUP}")  # scratch removed when complete


def test_a_source_changed_between_the_passes_is_named(tmp_path, monkeypatch, sample_target, sample_aux, sample_params,
                                                     low):
    from crossfuse.align import candidates

    import dataclasses

    aux_dir = tmp_path / "aux"
    shutil.copytree(sample_aux.root, aux_dir)
    # Without checksums in the manifest (a dataset folder has none), only the second pass can notice.
    aux = manifest.relocate(sample_aux, root=str(aux_dir))
    aux = dataclasses.replace(aux, pairs=[dataclasses.replace(p, ir_sha256=None, vis_sha256=None) for p in aux.pairs])
    real_scan = candidates.scan_pool

    def scan_then_edit(*args, **kwargs):
        result = real_scan(*args, **kwargs)
        for pair in aux.pairs:  # every auxiliary visible image changes after it was scanned
            path = aux.url(pair.vis)
            from PIL import Image

            with Image.open(path) as img:
                img.convert("RGB").rotate(180).save(path, format=img.format)
        return result

    monkeypatch.setattr(candidates, "scan_pool", scan_then_edit)
    with pytest.raises(PairError, match=r"changed while the build ran .* restore it and rerun") as exc:
        build(target=sample_target, aux=aux, out=str(tmp_path / "a.zarr"), params=sample_params, engine=low)
    assert str(aux_dir) in str(exc.value)


def test_the_cli_flag_builds_the_same_corpus(tmp_path, sample_corpus):
    from click.testing import CliRunner

    from crossfuse.cli.align import main
    from tests.helpers import SAMPLE_AUX, SAMPLE_PARAMS, SAMPLE_TARGET

    out = tmp_path / "low.zarr"
    r = CliRunner().invoke(main, ["build", "-t", str(SAMPLE_TARGET), "-a", str(SAMPLE_AUX), "-o", str(out), "-q",
                                  "--low-scratch", "-k", str(SAMPLE_PARAMS["k"]), "-p", str(SAMPLE_PARAMS["patch"]),
                                  "-s", str(SAMPLE_PARAMS["stride"]), "--chunk", str(SAMPLE_PARAMS["chunk"])])
    assert r.exit_code == 0, r.output
    a, b = zarr.open_group(str(out), mode="r"), zarr.open_group(sample_corpus[0], mode="r")
    for name in ("vis", "ir", "source", "origin", "means", "distance"):
        assert np.array_equal(a[name][...], b[name][...]), name


def test_another_k_after_a_crash_fetches_its_own_selection(tmp_path, monkeypatch, sample_target, sample_aux,
                                                           sample_params, low):
    import dataclasses

    from tests.helpers import crash_writes_at

    out = str(tmp_path / "a.zarr")
    crash_writes_at(monkeypatch, 48)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=low)
    monkeypatch.undo()
    other = dataclasses.replace(sample_params, k=90)
    summary = build(target=sample_target, aux=sample_aux, out=out, params=other, engine=low)
    fresh = build(target=sample_target, aux=sample_aux, out=str(tmp_path / "fresh.zarr"), params=other, engine=low)
    assert summary.resumed and summary.record.counts.patches == 90
    a, b = zarr.open_group(out, mode="r"), zarr.open_group(str(tmp_path / "fresh.zarr"), mode="r")
    for name in ("vis", "ir", "origin", "distance"):
        assert np.array_equal(a[name][...], b[name][...]), name
    assert summary.record.gamma == fresh.record.gamma
