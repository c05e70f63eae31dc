"""The field's H5 training-patch layout, both ways, on the sample corpus: CDDFuse-style readers
get what crossfuse's own reader gives; an H5 becomes a packed corpus that verifies and exports
back within rounding; other layouts are refused naming what was found."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from crossfuse.align import verify
from crossfuse.cli.align import main as align_main
from crossfuse.schema import open_corpus

h5py = pytest.importorskip("h5py")


class TheirReader(torch.utils.data.Dataset):
    """What CDDFuse's ``utils/dataset.py`` H5Dataset does, restated: the keys of ``ir_patchs``
    in the order h5py lists them, and per key the (VIS, IR) arrays as float tensors."""

    def __init__(self, path):
        self.path = path
        with h5py.File(path, "r") as f:
            self.keys = list(f["ir_patchs"].keys())

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, index):
        with h5py.File(self.path, "r") as f:
            key = self.keys[index]
            return torch.Tensor(np.array(f["vis_patchs"][key])), torch.Tensor(np.array(f["ir_patchs"][key]))


def _their_rgb2y(rgb_uint8):
    """Their arithmetic: float32 / 255., then 0.299 R + 0.587 G + 0.114 B, left to right."""
    img = rgb_uint8.astype(np.float32) / 255.
    return img[0:1] * 0.299000 + img[1:2] * 0.587000 + img[2:3] * 0.114000


def _cli(*args):
    return CliRunner().invoke(align_main, [str(a) for a in args])


def test_their_reader_gets_what_crossfuses_reader_gives(tmp_path, sample_corpus):
    from crossfuse.corpus import PatchDataset

    out = tmp_path / "sample.h5"
    r = _cli("export", sample_corpus[0], "--out", out, "-q")
    assert r.exit_code == 0 and "200 patches of 64x64" in r.output, r.output
    theirs = TheirReader(str(out))
    ours = PatchDataset([sample_corpus[0]], visible="y")
    group, _ = open_corpus(sample_corpus[0])
    assert len(theirs) == len(ours) == 200
    for index in range(len(theirs)):
        vis, ir = theirs[index]
        row = int(theirs.keys[index])  # h5py lists "0", "1", "10", "100", ...: the key is the row
        assert vis.shape == ir.shape == (1, 64, 64) and vis.dtype == torch.float32
        item = ours[row]
        assert torch.allclose(vis, item["vis"], atol=1e-6) and torch.allclose(ir, item["ir"], atol=1e-6)
        assert np.array_equal(vis.numpy(), _their_rgb2y(group["vis"][row]))  # their arithmetic, bit for bit
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["crossfuse"])["patches"] == 200


def test_an_h5_becomes_a_packed_corpus_that_verifies_and_exports_back(tmp_path, sample_corpus):
    first = tmp_path / "first.h5"
    assert _cli("export", sample_corpus[0], "--out", first, "-q").exit_code == 0
    store = tmp_path / "imported.zarr"
    r = _cli("import", first, "--out", store, "--chunk", 64, "-q")
    assert r.exit_code == 0 and "200 patches of 64x64" in r.output, r.output
    report = verify(str(store))  # the source is the file itself: its sha256 is checked too
    assert report.ok and report.sources_checked == 1, report.problems  # one file, counted once (it said 2)
    group, record = open_corpus(str(store))
    vis = group["vis"][...]
    assert record.kind == "packed" and np.array_equal(vis[:, 0], vis[:, 1]) and np.array_equal(vis[:, 1], vis[:, 2])
    from crossfuse.digest import file_sha256

    assert record.inputs["import"]["sha256"] == file_sha256(str(first)) == record.sources[0].ir_sha256
    second = tmp_path / "second.h5"
    assert _cli("export", store, "--out", second, "-q").exit_code == 0
    with h5py.File(first, "r") as a, h5py.File(second, "r") as b:
        for group_name in ("ir_patchs", "vis_patchs"):
            worst = max(float(np.abs(np.array(a[group_name][k]) - np.array(b[group_name][k])).max())
                        for k in a[group_name])
            assert worst <= 0.5 / 255 + 1e-6, (group_name, worst)
        assert np.array_equal(np.array(a["ir_patchs"]["7"]), np.array(b["ir_patchs"]["7"]))  # IR is exact
    # An existing output is kept unless --overwrite.
    before = second.read_bytes()
    r = _cli("export", store, "--out", second, "-q")
    assert r.exit_code == 1 and "--overwrite" in r.output and second.read_bytes() == before


def _write(path, ir=None, vis=None, top="ok"):
    with h5py.File(path, "w") as f:
        if top != "ok":
            f.create_dataset("data", data=np.zeros((2, 4, 8, 8), np.float32))
            return
        gi, gv = f.create_group("ir_patchs"), f.create_group("vis_patchs")
        for key, value in (ir or {}).items():
            gi.create_dataset(key, data=value)
        for key, value in (vis or {}).items():
            gv.create_dataset(key, data=value)


@pytest.mark.parametrize("case,expected", [
    ("other layout", "holds ['data'] at its top level"),
    ("keys differ", "hold different keys"),
    ("out of range", "values outside [0, 1]"),
    ("wrong shape", "has shape (8, 8)"),
    ("gaps", "not \"0\" .. \"1\""),
    ("integers", "is uint8"),
])
def test_other_layouts_are_refused_naming_what_was_found(tmp_path, case, expected):
    p = np.full((1, 8, 8), 0.5, np.float32)
    path = tmp_path / "x.h5"
    if case == "other layout":
        _write(path, top="data")
    elif case == "keys differ":
        _write(path, ir={"0": p, "1": p}, vis={"0": p})
    elif case == "out of range":
        _write(path, ir={"0": p * 3}, vis={"0": p})
    elif case == "wrong shape":
        _write(path, ir={"0": p[0]}, vis={"0": p[0]})
    elif case == "gaps":
        _write(path, ir={"0": p, "2": p}, vis={"0": p, "2": p})
    else:
        _write(path, ir={"0": (p * 255).astype(np.uint8)}, vis={"0": (p * 255).astype(np.uint8)})
    r = _cli("import", path, "--out", tmp_path / "s.zarr", "-q")
    assert r.exit_code == 1 and expected in r.output and "x.h5" in r.output, r.output
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("case,message", [
    ("external_patch", "is a link to another file"),
    ("external_group", "'ir_patchs' is a link to another file"),
    ("dangling", "soft link to /nowhere, which does not exist"),
    ("group_patch", "is a Group, not a dataset"),
    ("leading_zero", "the patch keys are not"),
])
def test_links_out_of_the_file_and_odd_layouts_are_refused_in_one_line(tmp_path, case, message):
    """Issue 30 FAIL 3 and the H5 WEAK cases: the record's sha256 covers the named file alone."""
    h5py = pytest.importorskip("h5py")
    from crossfuse.align.h5 import H5FormatError, import_h5

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g.create_group("ir_patchs").create_dataset("0", data=np.full((1, 8, 8), 0.5, np.float32))
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as f:
        ir, vis = f.create_group("ir_patchs"), f.create_group("vis_patchs")
        for i in range(2):
            ir.create_dataset(str(i), data=np.full((1, 8, 8), 0.25, np.float32))
            vis.create_dataset(str(i), data=np.full((1, 8, 8), 0.75, np.float32))
        if case == "external_patch":
            del ir["1"]
            ir["1"] = h5py.ExternalLink(str(other), "/ir_patchs/0")
        elif case == "external_group":
            del f["ir_patchs"]
            f["ir_patchs"] = h5py.ExternalLink(str(other), "/ir_patchs")
        elif case == "dangling":
            del vis["1"]
            vis["1"] = h5py.SoftLink("/nowhere")
        elif case == "group_patch":
            del ir["1"]
            ir.create_group("1")
        elif case == "leading_zero":
            ir["01"] = ir["1"]
            vis["01"] = vis["1"]
            del ir["1"], vis["1"]
    with pytest.raises(H5FormatError, match=message) as info:
        import_h5(str(path), str(tmp_path / "out.zarr"))
    assert "\n" not in str(info.value) and not (tmp_path / "out.zarr").exists()


def test_export_onto_a_folder_or_under_a_missing_one_is_one_line(tmp_path, sample_corpus):
    """Issue 30 WEAK: both were tracebacks."""
    pytest.importorskip("h5py")
    from crossfuse.cli.align import main as align_main

    (tmp_path / "adir").mkdir()
    for out, message in ((tmp_path / "adir", "is a folder"), (tmp_path / "missing" / "x.h5", "does not exist")):
        r = CliRunner().invoke(align_main, ["export", sample_corpus[0], "--format", "h5", "--out", str(out),
                                            "--overwrite"])
        assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output
    assert list((tmp_path / "adir").iterdir()) == []


def test_export_over_a_file_size_limit_is_one_line_before_writing(tmp_path, sample_corpus):
    """Issue 30: under `ulimit -f` the clean line came after ~1,500 lines of h5py noise, then a
    segfault. Now the size is checked first: exit 1, one line, nothing written."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200 * 1024, resource.RLIM_INFINITY))

    out = tmp_path / "x.h5"
    r = subprocess.run([sys.executable, "-c", "from crossfuse.cli.align import main; main()", "export",
                        sample_corpus[0], "--out", str(out), "-q"], preexec_fn=limit, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "file-size limit" in r.stderr and "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 2
    assert list(tmp_path.iterdir()) == []
