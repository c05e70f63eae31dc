"""results.md recomputed from a results.csv alone (`crossfuse analyse`), and the seed planner
(`crossfuse plan`), on synthetic per-image scores whose truth is known."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from crossfuse.cli.main import main
from crossfuse.experiment import results, stats
from crossfuse.experiment.results import Score
from crossfuse.fusion.metrics import NAMES

SEEDS, IMAGES = 6, 20


def _scores(rng, *, effect: float = 0.0, nan: bool = False) -> list[Score]:
    """Variants base, big (VIF + 0.5 at every seed) and same (no effect), two test sets."""
    out = []
    for test in ("rs", "tno"):
        images = rng.normal(5, 1, IMAGES)
        for seed in range(SEEDS):
            seed_effect = {v: rng.normal(0, 0.05) for v in ("base", "big", "same")}
            for v in ("base", "big", "same"):
                for i, level in enumerate(images):
                    metrics = {k: float(level + seed_effect[v] + rng.normal(0, 0.02)) for k in NAMES}
                    if v == "big":
                        metrics["VIF"] += 0.5 + effect
                    if nan and v == "same" and seed == 1 and i == 3:
                        metrics["Qabf"] = float("nan")
                    out.append(Score(variant=v, seed=seed, dataset=test, image=f"im{i}", metrics=metrics,
                                     model="crossfuse"))
    return out


def test_analyse_recomputes_the_verdicts_from_the_csv_alone(tmp_path):
    scores = _scores(np.random.default_rng(1), nan=True)
    csv_path = str(tmp_path / "results.csv")
    results.write_csv(scores, csv_path)
    r = CliRunner().invoke(main, ["analyse", csv_path, "--baseline", "base", "--out", str(tmp_path / "r.md")])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "r.md").read_text()
    def key(s):  # NaN != NaN: compare by repr
        return (s.model, s.variant, s.seed, s.dataset, s.image, repr(s.metrics))

    assert [key(s) for s in results.read_csv(csv_path)] == [key(s) for s in scores]  # the file holds everything
    big = next(line for line in text.splitlines() if line.startswith("| big |"))
    cells = big.split(" | ")
    vif = cells[1 + results.TABLE_METRICS.index("VIF")]
    assert "**better**" in vif and "p <0.001 / <0.001" in vif
    same = next(line for line in text.splitlines() if line.startswith("| same |"))
    assert "**better**" not in same and "**worse**" not in same
    assert "Holm" in text and "2 x 10 = " not in text and f"family of all {2 * 2 * 10} comparisons" in text
    assert "| same | 1 | rs | im3 | Qabf |" in text  # the NaN named, not silently dropped
    assert "## What this run could detect" in text
    # Benjamini-Hochberg and the other question are chosen by flag, and named
    r = CliRunner().invoke(main, ["analyse", csv_path, "--baseline", "base", "--correction", "bh",
                                  "--question", "population"])
    assert "Benjamini-Hochberg" in r.output and "crossed bootstrap" in r.output
    r = CliRunner().invoke(main, ["analyse", csv_path, "--baseline", "nope"])
    assert r.exit_code == 1 and "baseline 'nope' is not a variant" in r.output


def test_adjusted_p_is_never_below_the_raw_and_holm_over_the_whole_family(tmp_path):
    scores = _scores(np.random.default_rng(2))
    design = results.Design.from_scores(scores, baseline="base", name="x", source="test")
    found = results.verdicts(design, scores)
    ivs = [iv for rows in found.values() for cells in rows.values() for iv in cells.values()]
    assert len(ivs) == 2 * 2 * len(results.TABLE_METRICS)
    assert all(iv.adjusted >= iv.p for iv in ivs)
    assert [iv.adjusted for iv in ivs] == stats.adjust([iv.p for iv in ivs], "holm")


def test_plan_finds_the_seeds_a_pilot_implies(tmp_path):
    rng = np.random.default_rng(3)
    scores = _scores(rng)
    pilot = str(tmp_path / "pilot.csv")
    results.write_csv(scores, pilot)
    test = tmp_path / "s"
    test.mkdir()
    (test / "m.json").write_text('{"name": "m", "root": ".", "pairs": []}')
    spec = test / "spec.toml"
    spec.write_text('''
baseline = "base"
[train]
epochs = 1
phase1_epochs = 0
[corpora.c]
pack = "m.json"
[variants.base]
corpora = ["c"]
[variants.big]
corpora = ["c"]
[variants.same]
corpora = ["c"]
[tests.rs]
pairs = "m.json"
''')
    r = CliRunner().invoke(main, ["plan", str(spec), "--pilot", pilot, "--effect", "2%", "--metric", "VIF"])
    assert r.exit_code == 0, r.output
    from crossfuse.experiment import planning

    sd, mean, n = planning.spread(scores, baseline="base", test="rs", metric="VIF")  # one model
    family = 2 * len(results.TABLE_METRICS) * 1
    want = stats.seeds_needed(sd, 0.02 * mean, alpha=0.05 / family)
    assert f"{want} seeds give 80% power for 2% on VIF (rs)" in r.output
    assert n == SEEDS
    r = CliRunner().invoke(main, ["plan", str(spec), "--pilot", pilot, "--effect", "x%"])
    assert r.exit_code == 1 and "--effect must be a number" in r.output


def _two_models(rng, *, effect_b: float) -> list[Score]:
    """Variants topk and big for models a and b, one test set: big adds 0.5 to VIF with model a and
    ``effect_b`` with model b; every other metric is left as it is by both."""
    out = []
    images = rng.normal(5, 1, IMAGES)
    for model, effect in (("a", 0.5), ("b", effect_b)):
        for seed in range(SEEDS):
            for v in ("topk", "big"):
                seed_effect = rng.normal(0, 0.05)
                for i, level in enumerate(images):
                    metrics = {k: float(level + seed_effect + rng.normal(0, 0.02)) for k in NAMES}
                    if v == "big":
                        metrics["VIF"] += effect
                    out.append(Score(variant=f"{v}.{model}", seed=seed, dataset="rs", image=f"im{i}",
                                     metrics=metrics, model=model))
    return out


def test_whether_an_effect_depends_on_the_model_is_asked_of_its_own_family(tmp_path):
    scores = _two_models(np.random.default_rng(4), effect_b=0.0)
    design = results.Design.from_scores(scores, baseline="topk", name="x", source="test")
    found = results.verdicts(design, scores)
    dep = results.model_dependence(design, scores, found)
    cells = dep["rs"]["big"]
    assert list(dep["rs"]) == ["big"] and set(cells) == set(results.TABLE_METRICS)
    vif = cells["VIF"][0]
    a, b = found["rs"]["big.a"]["VIF"], found["rs"]["big.b"]["VIF"]
    assert vif.mean == a.mean - b.mean and vif.se == np.hypot(a.se, b.se)
    welch = (a.se ** 2 + b.se ** 2) ** 2 / (a.se ** 4 / a.df + b.se ** 4 / b.df)
    assert vif.df == welch and vif.verdict == "depends" and 0.4 < vif.lo < vif.mean < vif.hi < 0.6
    others = [c[0] for k, c in cells.items() if k != "VIF"]
    assert all(c.verdict == "no evidence" for c in others)  # the same (no) effect with both models
    family = [c[0] for c in cells.values()]
    assert [c.adjusted for c in family] == stats.adjust([c.p for c in family], "holm")
    # the same effect with both models: no evidence that it depends
    same = results.model_dependence(design, same_scores := _two_models(np.random.default_rng(5), effect_b=0.5))
    assert same["rs"]["big"]["VIF"][0].verdict == "no evidence"
    text = results.markdown(design, same_scores, [])
    assert "## Does the answer depend on the model?" in text and "family of all 10 such differences" in text
    row = next(line for line in text.splitlines() if line.startswith("| big.a |"))
    level = results.summarise(same_scores, "topk.a", "rs").mean["VIF"]
    effect = results.verdicts(design, same_scores)["rs"]["big.a"]["VIF"].mean
    assert f"{effect:+.3f} ({100 * effect / level:+.1f}%) [" in row  # the effect also as % of the baseline
    # one model: no such section
    one = _scores(np.random.default_rng(1))
    assert "depend on the model" not in results.markdown(results.Design.from_scores(one, baseline="base", name="y",
                                                                                     source="t"), one, [])


def test_a_contrast_with_one_seed_has_no_interval():
    one = stats.interval(np.array([[1.0, 2.0]]))
    two = stats.interval(np.array([[1.0, 2.0], [1.5, 2.5]]))
    c = stats.contrast(one, two)
    assert np.isnan(c.p) and c.verdict.startswith("no evidence") and c.mean == 1.5 - 1.75
