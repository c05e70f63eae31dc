"""The published split manifests: the right pairs, disjoint, with checksums, matching
../shared/datasets/SPLITS.md when it is present."""

import re

import pytest

from crossfuse import manifest
from tests.helpers import DATASETS, MANIFESTS, needs_shared


def _ids(name):
    return [p.id for p in manifest.load(str(MANIFESTS / f"{name}.json")).pairs]


def test_roadscene_train_and_test_partition_the_dataset():
    train, test, every = _ids("roadscene-train"), _ids("roadscene-test"), _ids("roadscene")
    assert (len(train), len(test)) == (171, 50) and not set(train) & set(test)
    assert sorted(train + test) == sorted(every)
    for name in ("roadscene-train", "roadscene-test", "tno-test"):
        assert all(p.ir_sha256 and p.vis_sha256 for p in manifest.load(str(MANIFESTS / f"{name}.json")).pairs)


@needs_shared
def test_the_test_splits_are_the_published_ones():
    text = (DATASETS / "SPLITS.md").read_text()
    roadscene = re.search(r"## RoadScene.*?\n\n(.*?)\n", text, re.S).group(1).split()
    assert sorted(_ids("roadscene-test")) == sorted(roadscene)
    tno = [pair.split("->")[1] for pair in re.findall(r"\d\d->\d\d", text)]
    assert _ids("tno-test") == tno and len(tno) == 24
    m = manifest.load(str(MANIFESTS / "tno-test.json"))
    assert (DATASETS / "TNO" / m.pairs[0].ir).is_file()


def test_a_build_can_take_its_target_from_the_training_split():
    """The README's example builds against roadscene-train.json; its root resolves like the others'."""
    train = manifest.load(str(MANIFESTS / "roadscene-train.json"))
    assert train.root == manifest.load(str(MANIFESTS / "roadscene.json")).root
    if not DATASETS.is_dir():
        pytest.skip("../shared/datasets is absent")
    assert all((DATASETS / "RoadScene" / p.vis).is_file() for p in train.pairs[:5])
