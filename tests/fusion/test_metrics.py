"""The protocol's metrics against the official evaluator's values, and their properties."""

import json
import math

import numpy as np
import pytest

from crossfuse.fusion.metrics import cddfuse as M
from tests.helpers import DATASETS, MANIFESTS, REFERENCE

BUNDLED = MANIFESTS / "sample" / "metrics"


def _records():
    out = [(BUNDLED, BUNDLED, r) for r in json.loads((BUNDLED / "metrics_reference.json").read_text())]
    shared = REFERENCE / "metrics" / "metrics_reference.json"
    if shared.is_file():
        out += [(REFERENCE / "metrics", DATASETS, r) for r in json.loads(shared.read_text())]
    return out


@pytest.mark.parametrize("fused_root,source_root,record", _records(),
                         ids=lambda v: v["fused"] if isinstance(v, dict) else "")
def test_matches_the_official_evaluator(fused_root, source_root, record):
    f = M.read_gray(str(fused_root / record["fused"]))
    a = M.read_gray(str(source_root / record["ir"]))
    b = M.read_gray(str(source_root / record["vis"]))
    assert list(f.shape) == record["shape"]
    got = M.all_metrics(fused=f, ir=a, vis=b)
    assert set(got) == set(M.NAMES) == set(record["metrics"])
    for name, expected in record["metrics"].items():
        assert got[name] == pytest.approx(expected, rel=1e-4), name


@pytest.fixture(scope="module")
def images():
    a = M.read_gray(str(BUNDLED / "ir" / "FLIR_00211.jpg"))
    b = M.read_gray(str(BUNDLED / "vis" / "FLIR_00211.jpg"))
    f = M.read_gray(str(BUNDLED / "fused" / "RoadScene_FLIR_00211_max.png"))
    return f, a, b


def test_reading_follows_the_protocol(tmp_path):
    rgb = np.array([[[10, 200, 30], [255, 255, 255]]], dtype=np.uint8)
    from PIL import Image

    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert M.read_gray(str(tmp_path / "c.png")).tolist() == [[round(0.299 * 10 + 0.587 * 200 + 0.114 * 30), 255.0]]
    Image.fromarray(rgb[..., 1]).save(tmp_path / "g.png")
    assert M.read_gray(str(tmp_path / "g.png")).tolist() == [[200.0, 255.0]]


def test_fused_equal_to_a_source(images):
    _, a, b = images
    assert M.ssim(fused=a, ir=a, vis=a) == pytest.approx(2.0)
    assert M.cc(fused=a, ir=a, vis=a) == pytest.approx(1.0)
    assert M.mse(fused=a, ir=a, vis=a) == 0 and M.psnr(fused=a, ir=a, vis=a) == math.inf
    assert M.mi(fused=a, ir=a, vis=a) == pytest.approx(2 * M._mutual_information(a, a))
    assert M._mutual_information(a, a) == pytest.approx(M.en(a) * math.log(2))  # MI(X, X) = H(X), in nats
    assert M.vif(fused=a, ir=a, vis=a) == pytest.approx(2.0)
    # F = A = B: angles agree (A_AF = 1) and, by the protocol's quirk, G_AF = g_F where g_A = g_F
    g, _ = M._sobel(a)
    qg = 0.9994 / (1 + np.exp(-15 * (g - 0.5)))
    qa = 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))
    assert M.qabf(fused=a, ir=a, vis=a) == pytest.approx(float((qg * qa * g).sum() / g.sum()), rel=1e-12)


def test_symmetric_in_the_sources(images):
    f, a, b = images
    for name in ("MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", "MSE"):
        fn = getattr(M, name.lower())
        assert fn(fused=f, ir=a, vis=b) == pytest.approx(fn(fused=f, ir=b, vis=a), rel=1e-12), name


def test_constant_images_give_defined_values(images):
    _, a, b = images
    flat = np.full_like(a, 128.0)
    for f, x, y in ((flat, a, b), (a, flat, flat), (flat, flat, flat)):
        values = M.all_metrics(fused=f, ir=x, vis=y)
        assert not any(math.isnan(v) for v in values.values()), values
    values = M.all_metrics(fused=flat, ir=a, vis=b)
    assert values["EN"] == 0 and values["SD"] == 0 and values["SF"] == 0 and values["AG"] == 0 and values["CC"] == 0


def test_single_metrics_on_hand_checkable_images():
    ramp = np.tile(np.arange(8, dtype=np.float64), (4, 1))  # columns 0..7
    assert M.sf(ramp) == pytest.approx(1.0)
    assert M.ag(ramp) == pytest.approx(math.sqrt(0.5))
    assert M.en(ramp) == pytest.approx(3.0)
    assert M.sd(ramp) == pytest.approx(np.arange(8).std())
