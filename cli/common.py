"""Helpers shared by the commands: clean error reporting and progress bars on stderr."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from crossfuse.errors import CrossfuseError


def reports_errors(func: Callable[..., Any] | None = None, *,
                   interrupted: str = "interrupted; nothing was left half-written.") -> Any:
    """Turn crossfuse's own errors into ``Error: <message>`` and exit status 1, without a traceback,
    and Ctrl-C into ``interrupted``: how to resume (exit status 130). Use bare or with arguments."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                with _quiet_on_interrupt():
                    return f(*args, **kwargs)
            except CrossfuseError as exc:
                raise click.ClickException(str(exc)) from exc
            except PermissionError as exc:  # an output folder (or its parent) that may not be written
                raise click.ClickException(f"permission denied: {exc.filename or exc}; choose a location you can "
                                           "write to (or read, for inputs).") from exc
            except OSError as exc:  # a full disk met outside crossfuse's own writers (zarr's, Dask's)
                from crossfuse.atomic import out_of_space

                if problem := path_problem(exc) or unreachable(exc):
                    raise click.ClickException(problem) from exc
                if not (reason := out_of_space(exc)):
                    raise
                where = f" {exc.filename}" if exc.filename else ""
                raise click.ClickException(f"cannot write{where}: {reason}. Free some space (or raise the limit) "
                                           "and run the same command again: what was finished is kept.") from exc
            except KeyboardInterrupt:
                click.echo(f"\n{interrupted}", err=True)
                sys.exit(130)
            except Exception as exc:
                if type(exc).__name__ not in ("NoCredentialsError", "PartialCredentialsError"):  # botocore's
                    raise
                raise click.ClickException(f"no credentials for object storage ({exc}). Set AWS_ACCESS_KEY_ID and "
                                           "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or pass anonymous access in the "
                                           "URL's storage options, then run the same command again.") from exc

        return wrapper

    return decorate(func) if func is not None else decorate


def unreachable(exc: OSError) -> str | None:
    """One line for a remote location that cannot be reached (refused, unknown host, timed out):
    the standard library's and aiohttp's connection errors; None for other errors."""
    import socket

    if not isinstance(exc, (ConnectionError, socket.gaierror, TimeoutError)) and \
            not type(exc).__module__.startswith("aiohttp"):
        return None
    return (f"cannot reach the remote location: {exc}. Check the URL, the network and that the server is up, then run "
            "the same command again.")


def path_problem(exc: OSError) -> str | None:
    """One line for an output that cannot be made where it was asked for: a read-only file system,
    or a path through a regular file (``out/x`` where ``out`` is a file); None for other errors."""
    import errno
    import os

    name = exc.filename
    if exc.errno == errno.EROFS:
        return (f"cannot write {name or 'the output'}: the file system is read-only. Choose an output on a writable "
                "disk; nothing was written there.")
    if not name or exc.errno not in (errno.ENOTDIR, errno.EEXIST):
        return None
    path = os.path.abspath(os.fspath(name))
    while path != os.path.dirname(path) and not os.path.lexists(path):
        path = os.path.dirname(path)
    if not os.path.isfile(path):
        return None
    return (f"cannot make {name}: {path} is a file, not a folder. Choose another output path, or move the file "
            "away.")


#: Loggers whose records below CRITICAL are dropped once an interrupt has begun the shutdown.
_SHUTDOWN_NOISE = ("distributed", "dask", "tornado", "asyncio")
_interrupt = {"seen": False}


class _DropShutdownNoise:
    """A logging filter: after Ctrl-C, the engine's shutdown messages ("Task ... cancelled",
    CancelledError) are expected, not errors, so they are not shown."""

    def filter(self, record) -> bool:
        return not (_interrupt["seen"] and record.name.split(".", 1)[0] in _SHUTDOWN_NOISE
                    and record.levelno < logging.CRITICAL)


_FILTER = _DropShutdownNoise()


def _install_noise_filter() -> None:
    handlers = [logging.lastResort] + [h for name in ("", *_SHUTDOWN_NOISE) for h in logging.getLogger(name).handlers]
    for handler in handlers:
        if handler is not None and _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


@contextmanager
def _quiet_on_interrupt() -> Iterator[None]:
    """On SIGINT, interrupt as usual, with the engine's shutdown logging dropped, so that what the
    user sees is only how to resume; a second SIGINT during the shutdown exits at once (every
    command resumes from a kill). The handler only sets a flag and raises: it must take no lock
    (logging's included), since it runs between any two bytecodes of the main thread and a lock
    it leaves held stops every other thread (a build's Ctrl-C once hung there for minutes)."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _install_noise_filter()
    _interrupt["seen"] = False

    def on_sigint(signum: int, frame: Any) -> None:
        if _interrupt["seen"]:
            os.write(2, b"\ninterrupted again: stopping now (what was finished is kept).\n")
            os._exit(130)
        _interrupt["seen"] = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def quiet_client_logging() -> None:
    """Dask's client logs a traceback of every failed reconnection when its scheduler goes away,
    and asyncio one for each of the client's waits left behind when it closes on a dead cluster
    ("Task exception was never retrieved ... AllExit"); the engine turns all of that into one clear
    error (what happened, how to resume), so the commands keep those logs to critical ones."""
    import distributed  # noqa: F401 - importing it configures its loggers; set ours after that

    _critical_only("distributed.client", "distributed.comm", "asyncio")
    # A failed task is logged by its worker ("Compute Failed" and a traceback) and raised here as
    # well, where the engine says what it means; in the in-process cluster that log is a duplicate.
    _critical_only("distributed.worker")
    _install_noise_filter()


def _critical_only(*names: str) -> None:
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def progress_factory(quiet: bool):
    """A ``progress(label, total)`` for the library: a click progress bar on stderr (showing the
    latest ``info``, e.g. the loss), or nothing."""

    @contextmanager
    def progress(label: str, total: int) -> Iterator[Callable[..., None]]:
        if quiet:
            yield lambda n=1, info="": None
            return
        latest = {"info": ""}
        with click.progressbar(length=total, label=label.ljust(28), file=sys.stderr, show_pos=True,
                               show_eta=True, width=30, item_show_func=lambda _: latest["info"]) as bar:

            def advance(n: int = 1, info: str = "") -> None:
                latest["info"] = info
                bar.update(n)

            yield advance

    return progress
