"""The experiment spec: the recipes read, K lists expand, and every mistake is named."""

from __future__ import annotations

import pytest

from crossfuse.errors import ConfigError
from crossfuse.experiment import spec
from tests.helpers import REPO

SMOKE = REPO / "recipes" / "smoke.toml"


@pytest.mark.parametrize("recipe", ["smoke", "cpu", "paper"])
def test_the_recipes_read(recipe):
    s = spec.load(str(REPO / "recipes" / f"{recipe}.toml"))
    assert s.variants and s.tests and s.corpora
    for v in s.variants.values():
        assert all(c in s.corpora for c in v.corpora)


def test_a_list_of_k_expands_corpora_and_variants():
    s = spec.load(str(SMOKE))
    assert list(s.variants) == ["target-only", "as-is", "aligned@k24", "aligned@k48"]
    v = s.variants["aligned@k48"]
    assert v.corpora == ("target", "aux-aligned@k48") and v.k == 48 and v.family == "aligned"
    assert s.corpora["aux-aligned@k48"].kind == "aligned" and s.corpora["aux-aligned@k48"].k == 48
    assert s.corpora["target"].manifest == str(REPO / "data_manifests" / "sample-target-train.json")
    assert s.variants["target-only"].config.network.dim == 8 and s.seeds == (0, 1)


def _write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(SMOKE.read_text() + "\n" + text)
    return str(path)


@pytest.mark.parametrize("extra,message", [
    ("[variants.bad]\ncorpora = [\"nope\"]", "no corpus named 'nope'"),
    ("[variants.bad]\ncorpora = [\"target\"]\nweights = [1, 2]", "one positive number per corpus"),
    ("[variants.bad]\ncorpora = [\"target\"]\ntrain = { consistency = \"no\" }", "consistency must be true or false"),
    ("[variants.bad]\ncorpora = [\"target\"]\ntrain = { aggressive = \"rotate\" }", "aggressive must be one of"),
    ("[corpora.x]\nbuild = \"a.json\"\nk = 5", "needs target = MANIFEST"),
    ("[corpora.x]\npack = \"a.json\"\nk = 5", "belong to build corpora"),
    ("[corpora.x]\nbuild = \"a.json\"\ntarget = \"b.json\"\nk = [5, 5]", "distinct"),
    ("[tests.t2]\npairs = \"x.json\"\npublished = \"Nowhere\"", "published must be one of"),
    ("colour = 1", "unknown key: 'colour'"),
])
def test_mistakes_are_named(tmp_path, extra, message):
    with pytest.raises(ConfigError) as exc:
        spec.load(_write(tmp_path, extra))
    assert message in str(exc.value) and "spec.toml" in str(exc.value)


def test_unknown_variant_and_missing_file(tmp_path):
    s = spec.load(str(SMOKE))
    with pytest.raises(ConfigError, match="no variant 'x'; its variants are target-only"):
        s.variant("x")
    with pytest.raises(ConfigError, match="does not exist"):
        spec.load(str(tmp_path / "none.toml"))


def test_the_baseline_names_a_variant(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('baseline = "aligned@k48"\n' + SMOKE.read_text())
    assert spec.load(str(path)).baseline == "aligned@k48"
    assert spec.load(str(SMOKE)).baseline == "target-only"  # default: the first variant
    path.write_text('baseline = "nope"\n' + SMOKE.read_text())
    with pytest.raises(ConfigError, match="baseline must name a variant"):
        spec.load(str(path))


def test_build_corpora_take_select_and_transform(tmp_path):
    text = SMOKE.read_text().replace('k = [24, 48]', 'k = [24, 48]\nselect = "random"\ntransform = "none"')
    path = tmp_path / "spec.toml"
    path.write_text(text)
    s = spec.load(str(path))
    assert s.corpora["aux-aligned@k24"].select == "random" and s.corpora["aux-aligned@k24"].transform == "none"
    assert spec.load(str(SMOKE)).corpora["aux-aligned@k24"].select == "topk"
    path.write_text(SMOKE.read_text().replace('k = [24, 48]', 'k = [24, 48]\nselect = "best"'))
    with pytest.raises(ConfigError, match="select must be one of"):
        spec.load(str(path))
