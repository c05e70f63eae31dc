import json

import pytest

from crossfuse import manifest
from crossfuse.errors import ManifestError

from tests.helpers import MANIFESTS, SAMPLE_AUX


def test_sample_manifest_resolves_relative_root(sample_aux):
    assert len(sample_aux.pairs) == 12
    first = sample_aux.pairs[0]
    assert first.id == "m3fd/00000" and len(first.vis_sha256) == 64
    assert (MANIFESTS / "sample" / first.vis).is_file()
    assert sample_aux.url(first.vis) == str(MANIFESTS / "sample" / first.vis)


@pytest.mark.parametrize("ir_dir,vis_dir", [("ir", "vis"), ("infrared", "visible"), ("ir", "vi")])
def test_folder_layouts_pair_by_stem(tmp_path, ir_dir, vis_dir):
    (tmp_path / ir_dir).mkdir()
    (tmp_path / vis_dir).mkdir()
    for stem in ("b", "a"):
        (tmp_path / ir_dir / f"{stem}.png").write_bytes(b"x")
        (tmp_path / vis_dir / f"{stem}.jpg").write_bytes(b"x")
    (tmp_path / vis_dir / "notes.txt").write_text("ignored")
    m = manifest.load(str(tmp_path))
    assert [(p.id, p.ir, p.vis) for p in m.pairs] == [("a", f"{ir_dir}/a.png", f"{vis_dir}/a.jpg"),
                                                     ("b", f"{ir_dir}/b.png", f"{vis_dir}/b.jpg")]


def test_folder_orphan_is_kept_as_a_pair_without_partner(tmp_path):
    for d in ("ir", "vis"):
        (tmp_path / d).mkdir()
    (tmp_path / "ir" / "a.png").write_bytes(b"x")
    (tmp_path / "vis" / "a.png").write_bytes(b"x")
    (tmp_path / "vis" / "lonely.png").write_bytes(b"x")
    pairs = {p.id: p for p in manifest.load(str(tmp_path)).pairs}
    assert pairs["lonely"].ir == "" and pairs["lonely"].vis == "vis/lonely.png"


def test_folder_without_layout_is_a_clear_error(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ManifestError, match="ir/ \\+ vis/"):
        manifest.load(str(tmp_path))


def test_missing_path_and_bad_json_are_clear_errors(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        manifest.load(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match="not a JSON manifest"):
        manifest.load(str(bad))
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"name": "d", "root": ".", "pairs": [{"id": "a", "ir": "x", "vis": "y"}] * 2}))
    with pytest.raises(ManifestError, match="appears twice"):
        manifest.load(str(dup))


def test_root_override_and_roundtrip(tmp_path, sample_aux):
    m = manifest.load(str(SAMPLE_AUX), root="/elsewhere")
    assert m.url("a.png") == "/elsewhere/a.png"
    out = tmp_path / "m.json"
    manifest.write(manifest.relocate(sample_aux, root=sample_aux.root), str(out))
    again = manifest.load(str(out))
    assert again.pairs == sample_aux.pairs and manifest.fingerprint(again) == manifest.fingerprint(sample_aux)


def test_fsspec_memory_manifest(sample_aux):
    import fsspec

    fs = fsspec.filesystem("memory")
    pair = sample_aux.pairs[-1]
    for rel in (pair.ir, pair.vis):
        with open(sample_aux.url(rel), "rb") as src:
            fs.pipe(f"/ds/{rel}", src.read())
    fs.pipe("/ds/m.json", json.dumps({"name": "mem", "root": ".", "pairs": [
        {"id": pair.id, "ir": pair.ir, "vis": pair.vis}]}).encode())
    m = manifest.load("memory://ds/m.json")
    assert m.url(pair.vis) == f"memory://ds/{pair.vis}"
    from crossfuse.imageio import read_pair

    assert read_pair(m, m.pairs[0]).vis.shape == (480, 640, 3)
