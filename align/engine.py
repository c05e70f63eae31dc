"""The Dask engine: an in-process LocalCluster by default, or an existing cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from crossfuse.align.config import EngineConfig
from crossfuse.system import available_cores

#: zarr settings for the engine's work: Dask owns the cores, so zarr's own thread pool runs one
#: thread; and every chunk is stored even when it holds only the fill value (zeros), because the
#: store records a digest of every chunk and a missing chunk must mean a lost one.
_ZARR_SETTINGS = {"threading.max_workers": 1, "array.write_empty_chunks": True}


def _zarr_settings_plugin():
    """A worker plugin capping zarr's thread pool in each worker process of a remote cluster
    (including workers that join later)."""
    import distributed

    class ZarrSettings(distributed.WorkerPlugin):
        name = "crossfuse-zarr-settings"

        def setup(self, worker) -> None:  # noqa: ANN001 - distributed's Worker
            import zarr

            zarr.config.set(_ZARR_SETTINGS)

    return ZarrSettings()


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
            client.register_plugin(_zarr_settings_plugin())
            yield client
        return
    workers = engine.workers or available_cores()
    # ":0" puts the status server on a free port, so concurrent builds never collide on 8787.
    with zarr.config.set(_ZARR_SETTINGS), \
            distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=workers,
                                     dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield client
