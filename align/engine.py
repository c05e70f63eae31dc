"""The Dask engine: an in-process LocalCluster by default, or an existing cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from crossfuse.align.config import EngineConfig
from crossfuse.system import available_cores

#: Dask owns the cores: zarr's own thread pool runs one thread inside the engine's tasks.
_ZARR_THREADS = {"threading.max_workers": 1}


def _single_threaded_zarr_plugin():
    """A worker plugin capping zarr's thread pool in each worker process of a remote cluster
    (including workers that join later)."""
    import distributed

    class SingleThreadedZarr(distributed.WorkerPlugin):
        name = "crossfuse-zarr-threads"

        def setup(self, worker) -> None:  # noqa: ANN001 - distributed's Worker
            import zarr

            zarr.config.set(_ZARR_THREADS)

    return SingleThreadedZarr()


@contextmanager
def dask_client(engine: EngineConfig) -> Iterator["distributed.Client"]:  # noqa: F821
    """A ``distributed.Client``: connected to ``engine.scheduler`` if given, else to an in-process
    LocalCluster (threads; its status server on a free port) with ``engine.workers`` threads.
    zarr's thread pool is capped at one thread for the engine's work only: in the workers of a
    remote cluster, and for the duration of the block in this process (restored afterwards)."""
    import distributed
    import zarr

    if engine.scheduler:
        with distributed.Client(engine.scheduler) as client:
            client.register_plugin(_single_threaded_zarr_plugin())
            yield client
        return
    workers = engine.workers or available_cores()
    # ":0" puts the status server on a free port, so concurrent builds never collide on 8787.
    with zarr.config.set(_ZARR_THREADS), \
            distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=workers,
                                     dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield client
