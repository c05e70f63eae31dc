"""The Dask engine: an in-process LocalCluster by default, or an existing cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crossfuse.align.config import EngineConfig
from crossfuse.errors import EngineError, WriteError
from crossfuse.system import available_cores

#: zarr settings for the engine's work: Dask owns the cores, so zarr's own thread pool runs one
#: thread; and every chunk is stored even when it holds only the fill value (zeros), because the
#: store records a digest of every chunk and a missing chunk must mean a lost one.
_ZARR_SETTINGS = {"threading.max_workers": 1, "array.write_empty_chunks": True}


def zarr_settings():
    """The engine's zarr settings (:data:`_ZARR_SETTINGS`) for a ``with`` block of work done in
    this process (an import, say)."""
    import zarr

    return zarr.config.set(_ZARR_SETTINGS)


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
    The zarr settings (one thread; every chunk stored) hold for the engine's work only: in the
    workers of a remote cluster, and for the duration of the block in this process (restored
    afterwards)."""
    import distributed
    import zarr

    if engine.scheduler:
        with zarr.config.set(_ZARR_SETTINGS), distributed.Client(engine.scheduler) as client:
            client.register_plugin(_zarr_settings_plugin())
            yield client
        return
    workers = engine.workers or available_cores()
    # ":0" puts the status server on a free port, so concurrent builds never collide on 8787.
    with zarr.config.set(_ZARR_SETTINGS), \
            distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=workers,
                                     dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield client


def completed(client, futures, *, worker_timeout: float, poll: float = 2.0) -> Iterator[tuple[Any, Any]]:
    """``(future, result)`` for each of ``futures`` as it completes (``distributed.as_completed``),
    but never waiting forever on a dead cluster: a scheduler that is gone, or no worker connected
    for ``worker_timeout`` seconds, raises :class:`EngineError` (the store keeps what was done, so
    the same command resumes once the cluster is back). A task's own error is raised as it is.
    Futures the caller adds to ``futures`` (a dict) while iterating are waited for too."""
    import concurrent.futures
    import distributed

    pending, seen, idle_since = set(futures), set(futures), None
    lost = (concurrent.futures.CancelledError, distributed.comm.core.CommClosedError, OSError)
    while True:
        added = [f for f in futures if f not in seen]
        pending.update(added)
        seen.update(added)
        if not pending:
            break
        try:
            done = distributed.wait(list(pending), timeout=poll, return_when="FIRST_COMPLETED").done
        except (TimeoutError, distributed.TimeoutError):
            idle_since = _check_workers(client, idle_since, worker_timeout)
            continue
        except lost as exc:
            raise EngineError(_LOST.format(what=f"the Dask scheduler went away ({type(exc).__name__})")) from exc
        for future in done:
            pending.discard(future)
            # A result held by a worker that dies before we fetch it is computed again, and waits
            # for a worker like any pending task: fetch with the same watch on the cluster.
            while True:
                try:
                    value = future.result(timeout=poll)
                    break
                except (TimeoutError, distributed.TimeoutError):
                    idle_since = _check_workers(client, idle_since, worker_timeout)
                except lost as exc:
                    if future.status == "error":  # the task's own error (it ran and raised), not the cluster's
                        raise _task_error(exc) from exc
                    raise EngineError(_LOST.format(what=f"the cluster lost a task ({type(exc).__name__}: {exc})")) \
                        from exc
            yield future, value


def _task_error(exc: BaseException) -> BaseException:
    """What to raise for a task's own OSError: a full disk or file-size limit as a
    :class:`WriteError` saying so and how to resume; anything else as it is."""
    from crossfuse import atomic

    reason = atomic.out_of_space(exc)
    if not reason:
        return exc
    where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
    return WriteError(f"a build task could not write to the store{where}: {reason}. Free some space (or raise the "
                      "limit) and rerun the same command: every finished batch and chunk is kept.")


_LOST = ("{what}; the store keeps every finished batch and chunk, so rerun the same command to resume once the "
         "cluster is back (or without --scheduler, on this machine).")


def _check_workers(client, idle_since: float | None, worker_timeout: float) -> float | None:
    """When no worker has been connected for ``worker_timeout`` seconds, fail instead of hanging."""
    import time

    try:
        workers = client.scheduler_info().get("workers", {})
    except Exception as exc:  # the scheduler itself is unreachable
        raise EngineError(_LOST.format(what=f"the Dask scheduler cannot be reached ({type(exc).__name__})")) from exc
    if workers:
        return None
    now = time.monotonic()
    if idle_since is not None and now - idle_since > worker_timeout:
        raise EngineError(_LOST.format(what=f"no Dask worker has been connected for {worker_timeout:.0f} s"))
    return idle_since if idle_since is not None else now
