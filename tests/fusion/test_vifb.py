"""VIFB's protocol against its own MATLAB output: ../shared/reference/vifb holds, for 12 methods and
21 pairs, the value each of VIFB's 13 metric functions printed (5 significant digits). Every one
must round to the printed digits. Plus the quirks on small hand-checked cases."""

from __future__ import annotations

import csv
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from crossfuse.errors import EvalError
from crossfuse.fusion.metrics import common, vifb
from tests.helpers import DATASETS, SHARED

ORACLE = SHARED / "reference" / "vifb"
needs_oracle = pytest.mark.skipif(not (ORACLE / "values.tsv").is_file(), reason="../shared/reference/vifb is absent")


def _printed(value: float) -> float:
    """The value as MATLAB's dlmwrite prints it: 5 significant digits."""
    return float(f"{value:.5g}")


def _score_image(image: str, methods: list[str]) -> dict[tuple[str, str], dict[str, float]]:
    vis = vifb.read(str(DATASETS / "VIFB" / "vis" / f"{image}.jpg"))
    ir = vifb.read(str(DATASETS / "VIFB" / "ir" / f"{image}.jpg"))
    return {(image, m): vifb.all_metrics(vis=vis, ir=ir, fused=vifb.read(str(ORACLE / "fused" / m / f"{image}.jpg")))
            for m in methods}


@pytest.mark.slow
@needs_oracle
def test_every_printed_value_of_vifbs_matlab_code_is_reproduced():
    expected: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    with open(ORACLE / "values.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            expected[(row["image"], row["method"])][row["metric"]] = row["value"]
    assert len(expected) == 12 * 21 and sum(len(v) for v in expected.values()) == 3276
    by_image: dict[str, list[str]] = defaultdict(list)
    for image, method in expected:
        by_image[image].append(method)
    with ProcessPoolExecutor(max_workers=2) as pool:
        scored = {}
        for part in pool.map(_score_image, list(by_image), list(by_image.values())):
            scored.update(part)
    wrong = [(key, name, printed, scored[key][ours])
             for key, values in expected.items() for ours, name in vifb.FUNCTIONS.items()
             for printed in [values[name]] if _printed(scored[key][ours]) != float(printed)]
    assert not wrong, f"{len(wrong)} of 3276 differ, e.g. {wrong[:5]}"


def test_rgb2gray_rounds_uint8_and_not_double():
    rgb = np.array([[[10, 200, 31], [255, 0, 1]]], dtype=np.uint8)
    exact = rgb.astype(np.float64) @ common._GRAY
    assert np.array_equal(vifb.rgb2gray(rgb), np.floor(exact + 0.5).astype(np.uint8))
    assert np.allclose(vifb.rgb2gray(rgb.astype(np.float64)), exact)
    assert abs(common._GRAY.sum() - 1.0) < 1e-3 and np.allclose(common._GRAY, [0.2989, 0.5870, 0.1140], atol=1e-4)


def test_sf_scores_a_colour_image_as_its_channels_side_by_side():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 256, (5, 4, 3)).astype(np.uint8)
    wide = np.hstack([f[..., 0], f[..., 1], f[..., 2]]).astype(np.float64)  # MATLAB's f(i, j), j up to 3W
    rf = sum((wide[i, j] - wide[i, j - 1]) ** 2 for i in range(5) for j in range(1, 12)) / 60
    cf = sum((wide[i, j] - wide[i - 1, j]) ** 2 for i in range(1, 5) for j in range(12)) / 60
    assert vifb.sf(vis=f, ir=f, fused=f) == pytest.approx(np.sqrt(rf + cf), rel=1e-12)
    gray = f[..., 0]
    assert vifb.sf(vis=gray, ir=gray, fused=gray) != pytest.approx(vifb.sf(vis=f, ir=f, fused=f))


def test_vifbs_mse_is_not_a_mean_square_error():
    a = np.zeros((4, 5), np.uint8)
    b = np.full((4, 5), 3, np.uint8)
    assert vifb.rmse(vis=a, ir=a, fused=b) == pytest.approx(np.sqrt(20 * 9) / 20)  # sqrt of the sum, over H W
    assert vifb.psnr(vis=a, ir=a, fused=b) == pytest.approx(20 * np.log10(255 / np.sqrt(np.sqrt(180) / 20)))


def test_qcb_and_qcv_refuse_a_gray_fused_image_with_colour_sources():
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    gray = colour[..., 1]
    for metric in (vifb.qcb, vifb.qcv):
        with pytest.raises(EvalError, match="per channel"):
            metric(vis=colour, ir=colour, fused=gray)
        assert np.isfinite(metric(vis=colour, ir=colour, fused=colour))
    assert np.isfinite(vifb.qabf(vis=colour, ir=colour, fused=gray))  # Qabf turns everything gray: defined


def test_gray_visible_with_a_colour_fused_image_is_refused():
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, (24, 30, 3)).astype(np.uint8)
    with pytest.raises(EvalError, match="colour visible image"):
        vifb.ssim(vis=colour[..., 0], ir=colour, fused=colour)


def _sample_triplet(crop: tuple[int, int] = (70, 90)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bundled RoadScene pair (colour visible, gray infrared) cropped, and a plain fusion of it."""
    from tests.helpers import MANIFESTS

    root = MANIFESTS / "sample" / "roadscene"
    vis = vifb.read(str(root / "vis" / "FLIR_00006.jpg"))[100:100 + crop[0], 200:200 + crop[1]]
    ir = vifb.read(str(root / "ir" / "FLIR_00006.jpg"))[100:100 + crop[0], 200:200 + crop[1]]
    fused = np.maximum(vis, ir[..., None])
    return vis, ir, fused


def test_a_colour_image_scores_the_mean_of_its_channels_scored_alone():
    """The metrics that batch all channels through one set of filters (Qcb, Qcv, Qabf, SSIM, EI)
    give what VIFB's dispatch gives: each channel scored alone against the matching source
    channel (or the gray source whole), then averaged."""
    vis, ir, fused = _sample_triplet()
    ir3 = np.stack([ir, ir[::-1], ir[:, ::-1]], axis=-1)   # three different infrared channels
    for metric in (vifb.qcb, vifb.qcv, vifb.qabf, vifb.ssim, vifb.ei):
        for infrared, channel in ((ir, lambda k: ir), (ir3, lambda k: ir3[..., k])):
            alone = [metric(vis=vis[..., k], ir=channel(k), fused=fused[..., k]) for k in range(3)]
            assert metric(vis=vis, ir=infrared, fused=fused) == pytest.approx(np.mean(alone), rel=1e-12), metric.__name__
            assert len({round(a, 9) for a in alone}) == 3   # the channels differ: the test can tell them apart


def test_sobel_equals_a_direct_3x3_correlation():
    from crossfuse.fusion.metrics.common import sobel

    rng = np.random.default_rng(4)
    kx = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    for stack, exact in ((rng.normal(size=(2, 7, 9)) * 100, False),
                         (rng.integers(0, 256, (3, 8, 5)).astype(np.float64), True)):
        h, w = stack.shape[-2:]
        for pad in ("edge", "constant"):
            p = np.pad(stack, ((0, 0), (1, 1), (1, 1)), mode=pad)
            direct = [sum(k[i, j] * p[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) for k in (kx, kx.T)]
            for got, want in zip(sobel(stack, pad=pad), direct, strict=True):
                assert np.array_equal(got, want) if exact else np.allclose(got, want, rtol=0, atol=1e-10)


def test_csf_filtering_through_real_ffts_equals_matlabs_complex_form():
    """``real(ifft2(ifftshift(fftshift(fft2(x)) .* response)))`` for a response on freqspace's
    grid that depends on |u| and |v| only, with even and odd sizes."""
    rng = np.random.default_rng(5)
    for rows, cols in ((6, 8), (7, 9), (8, 5), (5, 6)):
        x = rng.integers(0, 256, (rows, cols)).astype(np.float64)
        u, v = vifb._freqspace(rows, cols)
        r = np.sqrt((cols / 8 * u) ** 2 + (rows / 30 * v) ** 2)
        response = np.exp(-(r / 2.0) ** 2) - 0.7 * np.exp(-(r / 0.5) ** 2)
        matlab = np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(x)) * response))
        assert np.abs(matlab.imag).max() < 1e-9
        got = vifb._csf(x[None], vifb._half_spectrum(response))[0]
        assert np.allclose(got, matlab.real, rtol=0, atol=1e-9), (rows, cols)


def test_local_contrast_equals_direct_same_size_gaussian_filtering():
    """Chen-Blum's two 31 x 31 Gaussians applied as filter2(G, x, 'same') with zero borders, here
    through FFTs of a padded fast size: equal to the direct sums, even for an image smaller than
    the window."""
    rng = np.random.default_rng(6)
    stack = rng.integers(1, 256, (2, 20, 23)).astype(np.float64)
    _, near, far, padded = vifb._chen_blum_filters(20, 23)
    got = vifb._local_contrast(stack, near, far, padded)
    x, y = np.meshgrid(np.arange(-15, 16), np.arange(-15, 16))
    p = np.pad(stack, ((0, 0), (15, 15), (15, 15)))

    def direct(sigma: float) -> np.ndarray:
        g = np.exp(-(x * x + y * y) / (2 * sigma * sigma)) / (2 * np.pi * sigma * sigma)
        return sum(g[i, j] * p[:, i:i + 20, j:j + 23] for i in range(31) for j in range(31))

    c = np.abs(direct(2.0) / direct(4.0) - 1)
    assert np.allclose(got, c ** 3 / (c ** 2 + 0.0001), rtol=1e-9, atol=0)


def test_block_sums_are_blkprocs_zero_padded_blocks():
    rng = np.random.default_rng(7)
    stack = rng.normal(size=(3, 35, 20))
    got = vifb._block_sums(stack, 16)
    assert got.shape == (3, 3, 2)
    for i in range(3):
        for j in range(2):
            assert np.allclose(got[:, i, j], stack[:, 16 * i:16 * i + 16, 16 * j:16 * j + 16].sum(axis=(1, 2)))


@needs_oracle
def test_eval_scores_under_vifbs_protocol_and_both(tmp_path):
    """`crossfuse eval --protocol vifb` on three VIFB pairs fused by ADF prints VIFB's own values;
    `--protocol all` carries both protocols' columns, the CDDFuse ones equal to a plain run's."""
    import dataclasses
    import shutil

    from click.testing import CliRunner

    from crossfuse import manifest
    from crossfuse.cli.main import main
    from tests.helpers import REPO

    whole = manifest.load(str(REPO / "data_manifests" / "vifb.json"))
    three = dataclasses.replace(whole, pairs=whole.pairs[:3])
    spec = tmp_path / "three.json"
    manifest.write(three, str(spec))
    fused = tmp_path / "fused"
    fused.mkdir()
    for p in three.pairs:
        shutil.copy(ORACLE / "fused" / "ADF" / f"{p.id}.jpg", fused / f"{p.id}.jpg")
    expected: dict[tuple[str, str], str] = {}
    with open(ORACLE / "values.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["method"] == "ADF":
                expected[(row["image"], row["metric"])] = row["value"]
    runs = {}
    for protocol in ("vifb", "all", "cddfuse"):
        out = tmp_path / f"{protocol}.csv"
        r = CliRunner().invoke(main, ["eval", "--fused", str(fused), "--pairs", str(spec), "--protocol", protocol,
                                      "--csv", str(out), "-j", "1", "-q"])
        assert r.exit_code == 0, r.output
        runs[protocol] = {row["name"]: row for row in csv.DictReader(open(out))}
    for p in three.pairs:
        for ours, name in vifb.FUNCTIONS.items():
            assert _printed(float(runs["vifb"][p.id][ours])) == float(expected[(p.id, name)]), (p.id, ours)
            assert runs["all"][p.id][f"vifb:{ours}"] == runs["vifb"][p.id][ours]
        for name in ("EN", "VIF", "Qabf", "MSE"):
            assert runs["all"][p.id][f"cddfuse:{name}"] == runs["cddfuse"][p.id][name]
    assert list(runs["cddfuse"]["carLight"])[:4] == ["dataset", "name", "EN", "SD"]


def test_flat_images_give_no_runtime_warnings():
    """Issue 30: a constant fused image made numpy's RuntimeWarning (0/0 in normalize1) reach the
    user. MATLAB's NaN stays; the warning does not."""
    import warnings

    rng = np.random.default_rng(0)
    ir, vis = (rng.integers(0, 256, (40, 50, 3)).astype(np.uint8) for _ in range(2))
    for fused in (np.zeros((40, 50, 3), np.uint8), np.full((40, 50, 3), 128, np.uint8)):
        for a, b in ((ir, vis), (np.full_like(ir, 9), np.zeros_like(vis))):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                vifb.all_metrics(ir=a, vis=b, fused=fused)
