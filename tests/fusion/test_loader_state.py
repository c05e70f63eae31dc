"""The loader refuses arguments and states that would give wrong batches (issue 30), resumes by
iterating after load_state_dict, and knows a corpus by its content, not its path."""

from __future__ import annotations

import os

import numpy as np
import pytest

from crossfuse import corpus
from crossfuse.errors import ParameterError


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "batch_size must be a whole number of at least 1"),
    ({"batch_size": -1}, "batch_size must be"),
    ({"batch_size": 2.5}, "batch_size must be"),
    ({"world": 0, "rank": 0}, "world at least 1"),
    ({"world": 2, "rank": 3}, "rank must be a whole number in 0..world-1"),
    ({"weights": [float("nan")]}, "one positive weight per corpus"),
    ({"weights": [float("inf")]}, "one positive weight per corpus"),
    ({"buffer_chunks": 0}, "buffer_chunks must be"),
    ({"cache_bytes": 0}, "cache_bytes must be"),
    ({"cache_bytes": -5}, "cache_bytes must be"),
    ({"workers": -1}, "workers must be"),
])
def test_bad_loader_arguments_are_refused_in_one_line(sample_corpus, kwargs, message):
    args = {"batch_size": 8, **kwargs}
    with pytest.raises(ParameterError, match=message) as info:
        corpus.PatchLoader([sample_corpus[0]], **args)
    assert "\n" not in str(info.value)


def test_a_subset_of_one_non_name_is_refused():
    with pytest.raises(ParameterError, match="pairs must be a name or a collection of names"):
        corpus.Subset(pairs=5)


def _ids(batches):
    return [b["source"].tolist() + b["origin"].ravel().tolist() for b in batches]


def test_load_state_dict_then_iterate_gives_the_remaining_batches(sample_corpus):
    def loader():
        return corpus.PatchLoader([sample_corpus[0]], batch_size=8, seed=2, fields=("source", "origin"))

    whole = loader()
    whole.set_epoch(1)
    every = _ids(whole)
    first = loader()
    first.set_epoch(1)
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    assert _ids(resumed) == every[3:]  # no set_epoch: the next iteration resumes
    again = loader()
    again.load_state_dict(state)
    again.set_epoch(1)
    assert _ids(again) == every[3:]  # set_epoch of the saved epoch continues
    fresh = loader()
    fresh.load_state_dict(state)
    fresh.set_epoch(2)
    other = loader()
    other.set_epoch(2)
    assert _ids(fresh) == _ids(other)  # another epoch starts afresh


@pytest.mark.parametrize("change,message", [
    (lambda s: [1, 2], "a loader state is a dict"),
    (lambda s: {**s, "batch": -1}, "batch must be a whole number >= 0"),
    (lambda s: {**s, "batch": 1.5}, "batch must be a whole number >= 0"),
    (lambda s: {**s, "epoch": "1"}, "epoch must be a whole number >= 0"),
    (lambda s: {**s, "batch": 10_000}, "lies beyond epoch"),
])
def test_a_tampered_state_is_refused(sample_corpus, change, message):
    loader = corpus.PatchLoader([sample_corpus[0]], batch_size=8, seed=2)
    loader.set_epoch(0)
    state = loader.state_dict()
    with pytest.raises(ParameterError, match=message):
        corpus.PatchLoader([sample_corpus[0]], batch_size=8, seed=2).load_state_dict(change(state))


def test_a_state_knows_its_corpus_by_content_not_path(tmp_path, engine, monkeypatch):
    from crossfuse import manifest
    from crossfuse.align import BuildParams, pack
    from tests.helpers import SAMPLE_TARGET

    url = str(tmp_path / "c.zarr")
    pack(dataset=manifest.load(str(SAMPLE_TARGET)), out=url, params=BuildParams(patch=64, stride=64, chunk=48),
         engine=engine)
    loader = corpus.PatchLoader([url], batch_size=8, seed=0)
    loader.set_epoch(0)
    state = loader.state_dict()
    monkeypatch.chdir(tmp_path)  # the same store by a relative path is the same corpus
    corpus.PatchLoader(["c.zarr"], batch_size=8, seed=0).load_state_dict(state)
    pack(dataset=manifest.load(str(SAMPLE_TARGET)), out=url, params=BuildParams(patch=64, stride=96, chunk=48),
         engine=engine, overwrite=True)  # rebuilt at the same path: other data
    with pytest.raises(ParameterError, match="corpora"):
        corpus.PatchLoader([url], batch_size=8, seed=0).load_state_dict(state)
