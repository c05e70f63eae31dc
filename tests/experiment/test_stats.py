"""The experiment's verdicts on synthetic scores whose truth is known: with no effect "better"
stays near its nominal 2.5%, a real effect is found, and the direction follows the metric."""

import numpy as np
import pytest

from crossfuse.experiment import stats


def _null(rng, seeds=4, images=50, seed_sd=1.0, image_sd=0.2, noise=0.5):
    """Paired differences of two variants that do not differ: each seed trains another network
    (a seed effect per variant), each image has its own interaction, plus noise."""
    return (rng.normal(0, seed_sd * np.sqrt(2), (seeds, 1)) + rng.normal(0, image_sd, (1, images))
            + rng.normal(0, noise * np.sqrt(2), (seeds, images)))


@pytest.mark.parametrize("seed_sd,image_sd,low,high", [
    (1.0, 0.2, 0.010, 0.045),   # seeds dominate, as in training: near the nominal 2.5%
    (0.3, 0.3, 0.0, 0.045),     # mixed: never above
    (0.0, 0.5, 0.0, 0.045),     # images dominate: cautious, never above
])
def test_no_effect_is_called_better_about_2_5_percent_of_the_time(seed_sd, image_sd, low, high):
    rng = np.random.default_rng(7)
    reps = 600
    calls = [stats.interval(_null(rng, seed_sd=seed_sd, image_sd=image_sd), resamples=1000, seed=r).verdict
             for r in range(reps)]
    better = calls.count("better") / reps
    worse = calls.count("worse") / reps
    assert low <= better <= high and worse <= high, (better, worse)


def test_a_real_effect_is_found_and_its_sign_read_by_the_metrics_direction():
    rng = np.random.default_rng(3)
    found = {"better": 0, "worse": 0}
    for r in range(100):
        diff = _null(rng, seed_sd=0.3) + 1.5  # an effect five times the seed spread
        found["better"] += stats.interval(diff, resamples=1000, seed=r).verdict == "better"
        found["worse"] += stats.interval(diff, larger_is_better=False, resamples=1000, seed=r).verdict == "worse"
    assert found["better"] >= 90 and found["worse"] >= 90, found
    flat = stats.interval(_null(rng) * 0, resamples=200)
    assert flat.verdict == "no evidence" and flat.lo == flat.hi == 0.0


def test_one_seed_gives_no_interval_and_the_mean_is_the_paired_mean():
    diff = np.array([[1.0, 2.0, 3.0]])
    one = stats.interval(diff)
    assert one.verdict == "no evidence (one seed)" and np.isnan(one.lo) and one.mean == 2.0
    assert stats.t975(3) == pytest.approx(3.182) and stats.t975(1000) == pytest.approx(1.9624)


def test_pairs_are_matched_by_seed_and_image():
    from crossfuse.experiment.results import Score

    def s(variant, seed, image, value):
        return Score(variant=variant, seed=seed, dataset="t", image=image, metrics={"EN": value})

    scores = [s("a", 0, "x", 5.0), s("a", 0, "y", 7.0), s("b", 0, "y", 6.0), s("b", 0, "x", 1.0),
              s("a", 1, "x", 2.0), s("a", 1, "y", 2.0), s("b", 1, "x", 2.5), s("b", 1, "y", 1.0),
              s("a", 2, "x", 9.0)]  # seed 2 has no baseline: left out
    diff = stats.paired(scores, "a", "b", "t", "EN")
    assert diff.tolist() == [[4.0, 1.0], [-0.5, 1.0]]
