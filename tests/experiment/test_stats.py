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
    assert stats.t975(3) == pytest.approx(3.182, abs=1e-3) and stats.t975(1000) == pytest.approx(1.96234, rel=1e-5)


def test_pairs_are_matched_by_seed_and_image():
    from crossfuse.experiment.results import Score

    def s(variant, seed, image, value):
        return Score(variant=variant, seed=seed, dataset="t", image=image, metrics={"EN": value})

    scores = [s("a", 0, "x", 5.0), s("a", 0, "y", 7.0), s("b", 0, "y", 6.0), s("b", 0, "x", 1.0),
              s("a", 1, "x", 2.0), s("a", 1, "y", 2.0), s("b", 1, "x", 2.5), s("b", 1, "y", 1.0),
              s("a", 2, "x", 9.0)]  # seed 2 has no baseline: left out
    diff = stats.paired(scores, "a", "b", "t", "EN")
    assert diff.tolist() == [[4.0, 1.0], [-0.5, 1.0]]


def test_student_t_against_its_tables():
    # two-sided 5% and one-sided 20% critical values (any statistics table)
    for df, q975, q80 in ((1, 12.706, 1.376), (3, 3.182, 0.978), (10, 2.228, 0.879), (30, 2.042, 0.854)):
        assert stats.t_quantile(0.975, df) == pytest.approx(q975, abs=1e-3)
        assert stats.t_quantile(0.8, df) == pytest.approx(q80, abs=1e-3)
    assert stats.two_sided_p(2.0, 1.0, 10) == pytest.approx(0.07339, abs=1e-5)
    assert stats.t_cdf(0.0, 7) == pytest.approx(0.5)


def test_holm_and_benjamini_hochberg_adjust_as_defined():
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    assert stats.adjust(p, "holm")[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.adjust(p, "bh")[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert np.isnan(stats.adjust(p, "holm")[4]) and stats.adjust(p, "none")[:4] == p[:4]


def test_a_family_of_null_comparisons_flags_about_5_percent_raw_and_almost_none_adjusted():
    """The review's point: 120 tests at 5% give about 6 flags by chance. After Holm the family
    keeps its 5%: in most families not one comparison is flagged."""
    rng = np.random.default_rng(11)
    raw_flags, families_flagged = [], 0
    for family in range(40):
        ps = [stats.interval(_null(rng, seeds=6, image_sd=0.0), question="images").p for _ in range(120)]
        raw_flags.append(np.mean(np.array(ps) < 0.05))
        families_flagged += min(stats.adjust(ps, "holm")) < 0.05
    assert 0.03 <= np.mean(raw_flags) <= 0.07
    assert families_flagged <= 5  # about 5% of 40 families


def test_the_images_question_holds_its_level_with_images_fixed():
    rng = np.random.default_rng(5)
    calls = [stats.interval(_null(rng, seeds=5, image_sd=0.0), question="images").verdict for _ in range(800)]
    assert 0.01 <= calls.count("better") / 800 <= 0.045 and calls.count("worse") / 800 <= 0.045


def test_seeds_needed_gives_the_power_it_promises():
    """The planner's number of seeds, simulated: the effect is found about 80% of the time."""
    seed_sd, effect = 1.0, 1.2
    s = stats.seeds_needed(seed_sd, effect)
    assert s is not None and s > 2
    rng = np.random.default_rng(9)
    found = np.mean([stats.interval(rng.normal(effect, seed_sd, (s, 1)), question="images").verdict == "better"
                     for _ in range(2000)])
    assert 0.74 <= found <= 0.9, (s, found)
    fewer = np.mean([stats.interval(rng.normal(effect, seed_sd, (s - 1, 1)), question="images").verdict == "better"
                     for _ in range(2000)])
    assert fewer < found
    assert stats.detectable(seed_sd / np.sqrt(s), s - 1) <= effect < stats.detectable(seed_sd / np.sqrt(s - 1), s - 2)


def test_a_contrast_of_two_equal_effects_is_flagged_about_5_percent_of_the_time():
    """Welch's t on two models' independent effects: under no difference its raw p falls below
    0.05 about 5% of the time (seeds of unequal spread, 10 and 6 of them), and a real one is found."""
    rng = np.random.default_rng(11)
    flags, found = 0, 0
    for _ in range(800):
        a = stats.interval(_null(rng, seeds=10, seed_sd=0.5) + 0.3, question="images")
        b = stats.interval(_null(rng, seeds=6, seed_sd=1.5) + 0.3, question="images")
        flags += stats.contrast(a, b).p < 0.05
        found += stats.contrast(stats.interval(_null(rng, seeds=10, seed_sd=0.3) + 2.0, question="images"),
                                stats.interval(_null(rng, seeds=10, seed_sd=0.3), question="images")).p < 0.05
    assert 0.03 <= flags / 800 <= 0.075 and found / 800 > 0.9, (flags, found)
