"""Shared fixtures: the bundled sample and a corpus built from it once per session."""

from __future__ import annotations

import pytest

from tests.helpers import SAMPLE_AUX, SAMPLE_PARAMS, SAMPLE_TARGET


@pytest.fixture(scope="session")
def sample_target():
    from crossfuse import manifest

    return manifest.load(str(SAMPLE_TARGET))


@pytest.fixture(scope="session")
def sample_aux():
    from crossfuse import manifest

    return manifest.load(str(SAMPLE_AUX))


@pytest.fixture(scope="session")
def engine():
    from crossfuse.align import EngineConfig

    return EngineConfig(workers=2, batch=5)


@pytest.fixture(scope="session")
def sample_params():
    from crossfuse.align import BuildParams

    return BuildParams(**SAMPLE_PARAMS)


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory, sample_target, sample_aux, sample_params, engine):
    """An aligned corpus of the bundled sample, built once: (store path, BuildSummary)."""
    from crossfuse.align import build

    out = str(tmp_path_factory.mktemp("corpus") / "sample.zarr")
    summary = build(target=sample_target, aux=sample_aux, out=out, params=sample_params, engine=engine)
    return out, summary
