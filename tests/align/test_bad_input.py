"""Bad input stops a build with a clear error, or with --skip-bad is recorded and skipped."""

import json
import shutil

import pytest

from crossfuse import manifest
from crossfuse.align import BuildParams, build, describe
from crossfuse.errors import ManifestError, PairError, ParameterError

PARAMS = BuildParams(patch=64, stride=128, k=20, chunk=16)


@pytest.fixture
def broken_aux(tmp_path, sample_aux):
    """A copy of four sample auxiliary pairs as a folder: one truncated, one without partner."""
    root = tmp_path / "aux"
    for d in ("ir", "vis"):
        (root / d).mkdir(parents=True)
    for pair in sample_aux.pairs[4:8]:
        stem = pair.id.split("/")[1]
        shutil.copy(sample_aux.url(pair.ir), root / "ir" / f"{stem}.png")
        shutil.copy(sample_aux.url(pair.vis), root / "vis" / f"{stem}.png")
    vis = sorted((root / "vis").iterdir())
    vis[0].write_bytes(vis[0].read_bytes()[:5000])
    (root / "ir" / vis[1].name).unlink()
    return root, vis[0].stem, vis[1].stem


def test_bad_pair_stops_the_build_and_names_the_file(tmp_path, broken_aux, sample_target, engine):
    root, truncated, orphan = broken_aux
    with pytest.raises(ManifestError, match=rf"1 pair\(s\) lack a partner: '{orphan}' \(infrared missing\)"):
        build(target=sample_target, aux=manifest.load(str(root)), out=str(tmp_path / "o.zarr"), params=PARAMS,
              engine=engine)  # found before anything is written
    assert not (tmp_path / "o.zarr").exists()
    (root / "vis" / f"{orphan}.png").unlink()
    shutil.copy(root / "vis" / f"{truncated}.png", root / "vis" / "zz_second.png")
    shutil.copy(root / "ir" / sorted(p.name for p in (root / "ir").iterdir())[0], root / "ir" / "zz_second.png")
    with pytest.raises(PairError, match=rf"{truncated}.png is unreadable or truncated.*1 more problem.*--skip-bad") as info:
        build(target=sample_target, aux=manifest.load(str(root)), out=str(tmp_path / "o.zarr"), params=PARAMS,
              engine=engine)
    assert str(info.value).count("--skip-bad") == 1


def test_skip_bad_records_the_problems(tmp_path, broken_aux, sample_target, engine):
    root, truncated, orphan = broken_aux
    out = str(tmp_path / "o.zarr")
    summary = build(target=sample_target, aux=manifest.load(str(root)), out=out, params=PARAMS, engine=engine,
                    skip_bad=True)
    recorded = describe(out).record.skipped
    assert sorted(p.id for p in recorded) == sorted([truncated, orphan])
    assert {p.dataset for p in recorded} == {"aux"}
    assert any("no infrared partner" in p.error for p in recorded)
    assert summary.counts.aux_pairs == 2 and summary.counts.skipped == 2
    good = sorted(p.name.removesuffix(".png") for p in (root / "vis").iterdir())
    import zarr

    assert [s["id"] for s in zarr.open_group(out, mode="r").attrs["crossfuse"]["sources"]] == [g for g in good if g not in (truncated, orphan)]
    assert summary.counts.aux_patches == 2 * 20  # 640x480: 4 x 5 corners at stride 128


def test_empty_dataset(tmp_path, sample_target, engine):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"name": "empty", "root": ".", "pairs": []}))
    with pytest.raises(ManifestError, match="lists no image pairs"):
        build(target=sample_target, aux=manifest.load(str(empty)), out=str(tmp_path / "o.zarr"), params=PARAMS,
              engine=engine)


def test_patch_larger_than_every_image(tmp_path, sample_target, sample_aux, engine):
    with pytest.raises(ParameterError, match=r"larger than every image of .*sample-target.json \(the largest is 553x422\)"):
        build(target=sample_target, aux=sample_aux, out=str(tmp_path / "o.zarr"),
              params=BuildParams(patch=700, stride=200, k=1), engine=engine)


def test_k_larger_than_the_pool(tmp_path, sample_target, sample_aux, engine):
    with pytest.raises(ParameterError, match="K = 5000 but the auxiliary set has only 96 patches"):
        build(target=sample_target, aux=sample_aux, out=str(tmp_path / "o.zarr"),
              params=BuildParams(patch=64, stride=200, k=5000), engine=engine)


def test_fixed_file_is_read_again_after_a_failed_build(tmp_path, broken_aux, sample_aux, sample_target, engine):
    root, truncated, orphan = broken_aux
    out = str(tmp_path / "o.zarr")
    (root / "vis" / f"{orphan}.png").unlink()  # an unpaired image is refused before anything is written
    with pytest.raises(PairError):
        build(target=sample_target, aux=manifest.load(str(root)), out=out, params=PARAMS, engine=engine)
    source = next(p for p in sample_aux.pairs if p.id.endswith(truncated))
    shutil.copy(sample_aux.url(source.vis), root / "vis" / f"{truncated}.png")
    summary = build(target=sample_target, aux=manifest.load(str(root)), out=out, params=PARAMS, engine=engine,
                    overwrite=True)
    assert summary.counts.aux_pairs == 3 and not summary.skipped
