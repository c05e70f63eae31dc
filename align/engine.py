"""The Dask engine: an in-process LocalCluster by default, or an existing cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from crossfuse.align.config import EngineConfig
from crossfuse.system import available_cores


@contextmanager
def dask_client(engine: EngineConfig) -> Iterator["distributed.Client"]:  # noqa: F821
    """A ``distributed.Client``: connected to ``engine.scheduler`` if given, else to an in-process
    LocalCluster (threads; its status server on a free port) with ``engine.workers`` threads."""
    import distributed

    if engine.scheduler:
        with distributed.Client(engine.scheduler) as client:
            yield client
        return
    workers = engine.workers or available_cores()
    # ":0" puts the status server on a free port, so concurrent builds never collide on 8787.
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=workers,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield client


def limit_library_threads() -> None:
    """Keep zarr's own thread pool at one thread inside a Dask task (Dask owns the cores)."""
    import zarr

    if zarr.config.get("threading.max_workers") != 1:
        zarr.config.set({"threading.max_workers": 1})
