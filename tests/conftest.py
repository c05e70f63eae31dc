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


@pytest.fixture
def s3(monkeypatch):
    """A moto S3 server on 127.0.0.1 (a free port) with one bucket; fsspec's s3 defaults point at it."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    import fsspec

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()  # moto's
    # state is per process, not per server: start each test from an empty S3
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint, "key": "testing", "secret": "testing"})
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("crossfuse")
    yield fs
    server.stop()
