"""Tang's toolbox ("Evaluation-for-Image-Fusion") against its own output: ../shared/reference/tang
holds 5 methods x 21 TNO pairs scored by today's toolbox in GNU Octave (17 significant digits) and
by its 2022 version in MATLAB itself. Every value must come back through ``crossfuse eval``. Plus
the quirks that decide the digits, each against a literal re-statement of the MATLAB code on the
bundled sample (these run without ../shared)."""

from __future__ import annotations

import csv
import math
import subprocess
import sys

import numpy as np
import pytest

from crossfuse.fusion.evaluate import PROTOCOLS
from crossfuse.fusion.metrics import tang
from crossfuse.fusion.metrics.common import conv2_sobel, read_stored
from tests.helpers import REPO, SHARED

ORACLE = SHARED / "reference" / "tang"
needs_oracle = pytest.mark.skipif(not (ORACLE / "values_tang_octave.csv").is_file(),
                                  reason="../shared/reference/tang is absent")
SAMPLE = REPO / "data_manifests" / "sample" / "roadscene"


def _values(name: str) -> dict[tuple[str, str], dict[str, float]]:
    with open(ORACLE / name, newline="") as fh:
        return {(r["method"], r["image"].removesuffix(".png")): {k: float(r[k]) for k in tang.NAMES}
                for r in csv.DictReader(fh)}


def _board(tmp_path, protocol: str) -> dict[tuple[str, str], dict[str, float]]:
    """``crossfuse eval`` over the five method folders (a leaderboard) with the toolbox's own
    ir/ + vi/ source folder as --pairs; the per-image CSV, by (method, image)."""
    out = tmp_path / f"{protocol}.csv"
    r = subprocess.run([sys.executable, "-m", "crossfuse.cli.main", "eval", "--protocol", protocol, "--fused",
                        ORACLE / "fused", "--pairs", ORACLE / "sources", "--csv", out, "-q"],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr
    with open(out, newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row["name"] != "mean"]
    return {(row["method"], row["name"]): {k: float(row[k]) for k in tang.NAMES} for row in rows}


def _worst(ours: dict, expected: dict) -> dict[str, float]:
    """Per metric, the largest relative difference over every image."""
    assert set(ours) == set(expected)
    return {k: max(abs(ours[key][k] - v[k]) / abs(v[k]) for key, v in expected.items()) for k in tang.NAMES}


@pytest.mark.slow
@needs_oracle
def test_every_value_of_todays_toolbox_comes_back_through_the_cli(tmp_path):
    expected = _values("values_tang_octave.csv")
    assert len(expected) * len(tang.NAMES) == 1155
    worst = _worst(_board(tmp_path, "tang"), expected)
    # VIF: filter sums in another order (FFTs); measured 2.4e-9 at worst.
    assert all(v < (1e-6 if k == "VIF" else 1e-9) for k, v in worst.items()), worst


@pytest.mark.slow
@needs_oracle
def test_every_value_matlab_wrote_with_the_2022_toolbox_comes_back_through_the_cli(tmp_path):
    worst = _worst(_board(tmp_path, "tang2022"), _values("values_tang2022_matlab.csv"))
    # Qabf included: its conv2 is summed in MATLAB's order. Measured: VIF 9.8e-9, the rest 5e-12.
    assert all(v < (1e-6 if k == "VIF" else 1e-9) for k, v in worst.items()), worst


@needs_oracle
def test_2022_qabf_in_octaves_conv2_order_is_octaves_value_not_matlabs():
    """The images where Octave and MATLAB disagree most: the summation order alone decides it."""
    matlab, octave = _values("values_tang2022_matlab.csv"), _values("values_tang2022_octave.csv")
    apart = sorted(matlab, key=lambda k: -abs(matlab[k]["Qabf"] - octave[k]["Qabf"]) / matlab[k]["Qabf"])[:3]
    for method, image in apart:
        a, b, f = (tang.read(str(ORACLE / p)) for p in (f"sources/ir/{image}.png", f"sources/vi/{image}.png",
                                                          f"fused/{method}/{image}.png"))
        for program, values in (("octave", octave), ("matlab", matlab)):
            q = tang.all_metrics_2022(ir=a, vis=b, fused=f, program=program)["Qabf"]
            assert abs(q - values[(method, image)]["Qabf"]) < 1e-12, (method, image, program)
        assert abs(matlab[(method, image)]["Qabf"] - octave[(method, image)]["Qabf"]) > 1e-3 * matlab[(method, image)]["Qabf"]


# ---- the quirks, against literal re-statements of the MATLAB code (no ../shared needed) ----

def _crop(path, size=40) -> np.ndarray:
    return tang.read(str(path))[100:100 + size, 120:120 + size]


def _sample(size=40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A RoadScene pair from the bundled sample and a fused stand-in (their rounded mean), gray."""
    a, b = _crop(SAMPLE / "ir" / "FLIR_00006.jpg", size), _crop(SAMPLE / "vis" / "FLIR_00006.jpg", size)
    return a, b, ((a.astype(np.int64) + b + 1) // 2).astype(np.uint8)


def test_reading_is_matlabs_rgb2gray_with_the_readmes_weights():
    rgb = read_stored(str(SAMPLE / "vis" / "FLIR_00006.jpg")).astype(np.float64)
    assert rgb.ndim == 3 and not np.array_equal(rgb[..., 0], rgb[..., 1])  # a real colour image
    exact = rgb[..., 0] * 0.298936021293775 + rgb[..., 1] * 0.587043074451121 + rgb[..., 2] * 0.114020904255103
    assert np.array_equal(tang.read(str(SAMPLE / "vis" / "FLIR_00006.jpg")), np.floor(exact + 0.5).astype(np.uint8))


def test_mi_is_in_bits_with_habs_saturating_uint8_plus_one():
    a, b, f = _sample()
    f = f.copy()
    f[:5] = 255
    f[5:10] = 254  # uint8 + 1 puts 254 and 255 in one bin of the joint histogram

    def hab(x, y):  # Hab.m, loop for loop (uint8 + 1 saturates at 255)
        counter = np.zeros((256, 256))
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                counter[min(int(x[i, j]) + 1, 255) - 1, min(int(y[i, j]) + 1, 255) - 1] += 1
        p = counter[counter != 0] / counter.sum()
        return float(np.sum(-p * np.log2(p)))

    def entropy(x):
        p = np.bincount(x.ravel(), minlength=256) / x.size
        return float(-np.sum(p[p > 0] * np.log2(p[p > 0])))

    expected = entropy(a) + entropy(f) - hab(f, a) + entropy(b) + entropy(f) - hab(f, b)
    got = tang.all_metrics(ir=a, vis=b, fused=f)["MI"]
    assert abs(got - expected) < 1e-12
    unsaturated = tang._en(a) + tang._en(f) - tang._entropy(np.bincount(f.astype(int).ravel() * 256 + a.ravel()))
    assert abs(tang._mi(a, a, f) / 2 - unsaturated) > 1e-3  # the shared bin moves the value


def test_2022_sd_is_uint8_arithmetic_saturating_at_0_and_255():
    a, b, f = _sample(200)
    u = f.astype(np.float64).mean(axis=0).mean()
    total = 0
    for v in f.ravel():  # SD_evaluation.m on uint8: F - u rounds and saturates, and so does its square
        d = min(max(math.floor(float(v) - u + 0.5), 0), 255)
        total += min(d * d, 255)
    expected = math.sqrt(total / f.size)
    sd2022, sd = tang.all_metrics_2022(ir=a, vis=b, fused=f)["SD"], tang.all_metrics(ir=a, vis=b, fused=f)["SD"]
    assert sd2022 == pytest.approx(expected, rel=1e-15) and sd2022 <= math.sqrt(255) < sd


def test_psnr_is_on_unit_images_about_48_db_above_the_usual_figure():
    a, b, f = _sample()
    m = tang.all_metrics(ir=a, vis=b, fused=f)
    mse255 = (np.mean((f - a.astype(np.float64)) ** 2) + np.mean((f - b.astype(np.float64)) ** 2)) / 2
    assert m["MSE"] == pytest.approx(mse255 / 255 ** 2, rel=1e-12)
    assert m["PSNR"] - 10 * math.log10(255 ** 2 / mse255) == pytest.approx(20 * math.log10(255), rel=1e-12)


def test_cc_centres_bs_term_on_as_mean():
    a, b, f = (x.astype(np.float64) for x in _sample())
    fc = f - f.mean()
    r_af = np.sum((a - a.mean()) * fc) / math.sqrt(np.sum((a - a.mean()) ** 2) * np.sum(fc ** 2))
    r_bf = np.sum((b - a.mean()) * fc) / math.sqrt(np.sum((b - b.mean()) ** 2) * np.sum(fc ** 2))
    assert tang._cc(a, b, f) == pytest.approx((r_af + r_bf) / 2, rel=1e-12)


def test_conv2_in_each_programs_order_against_a_literal_loop():
    """The 2022 Qabf's Sobel responses of [0, 1] images: equal to a loop over the kernel in the
    program's order, bit for bit; the two orders differ in the last bits on a real image (what
    decides its equality tests), and agree exactly on integers (today's toolbox)."""
    a = _crop(SAMPLE / "ir" / "FLIR_00006.jpg", 24) / 255.0
    p = np.pad(a, 2)
    for program, columns in tang.CONV2_COLUMNS.items():
        sx, sy = tang._sobel_unit(a, program)
        for got, kernel in ((sx, tang._H3), (sy, tang._H1)):
            loop = np.zeros_like(a)
            for r in range(a.shape[0]):
                for s in range(a.shape[1]):
                    acc = 0.0
                    for j in columns:
                        for i in range(3):
                            acc = acc + kernel[i, j] * p[r + 3 - i, s + 3 - j]
                    loop[r, s] = acc
            assert np.array_equal(got, loop), program
    big = tang.read(str(SAMPLE / "ir" / "FLIR_00006.jpg")) / 255.0
    assert not np.array_equal(tang._sobel_unit(big, "matlab")[0], tang._sobel_unit(big, "octave")[0])
    whole = big * 255.0
    assert all(np.array_equal(x, y) for x, y in zip(conv2_sobel(whole), tang._sobel_unit(whole, "octave")))


def test_eval_cli_offers_every_protocol_and_reads_the_toolboxs_folder_layout(tmp_path):
    """--protocol's choices are evaluate's protocols; a folder of ir/ + vi/ (the toolbox's layout)
    is a pairs argument, and --protocol all gives every protocol's columns."""
    import shutil

    from crossfuse.cli.main import evaluate

    assert set(next(p for p in evaluate.params if p.name == "protocol").type.choices) == set(PROTOCOLS)

    for sub, name in (("ir", "ir"), ("vi", "vis")):
        (tmp_path / "src" / sub).mkdir(parents=True)
        for stem in ("FLIR_00006", "FLIR_01945"):
            shutil.copy(SAMPLE / name / f"{stem}.jpg", tmp_path / "src" / sub / f"{stem}.jpg")
    from PIL import Image

    (tmp_path / "fused").mkdir()
    for stem in ("FLIR_00006", "FLIR_01945"):  # a fused stand-in: the sources' rounded mean, in colour
        ir, vis = (read_stored(str(SAMPLE / s / f"{stem}.jpg")).astype(np.int64) for s in ("ir", "vis"))
        mean = (vis + (ir if ir.ndim == 3 else ir[..., None]) + 1) // 2
        Image.fromarray(mean.astype(np.uint8)).save(tmp_path / "fused" / f"{stem}.png")
    out = tmp_path / "all.csv"
    r = subprocess.run([sys.executable, "-m", "crossfuse.cli.main", "eval", "--protocol", "all", "--fused",
                        tmp_path / "fused", "--pairs", tmp_path / "src", "--csv", out, "-q"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {c.split(":")[0] for c in rows[0] if ":" in c} == {"cddfuse", "vifb", "tang", "tang2022"}
    first = rows[0]
    a, b = (tang.read(str(tmp_path / "src" / s / f"{first['name']}.jpg")) for s in ("ir", "vi"))
    direct = tang.all_metrics(ir=a, vis=b, fused=tang.read(str(tmp_path / "fused" / f"{first['name']}.png")))
    assert all(float(first[f"tang:{k}"]) == pytest.approx(v, rel=1e-12) for k, v in direct.items())
