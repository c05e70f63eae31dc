"""Helpers shared by the commands: clean error reporting and progress bars on stderr."""

from __future__ import annotations

import functools
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
            except KeyboardInterrupt:
                quiet_shutdown()
                click.echo(f"\n{interrupted}", err=True)
                sys.exit(130)

        return wrapper

    return decorate(func) if func is not None else decorate


@contextmanager
def _quiet_on_interrupt() -> Iterator[None]:
    """On SIGINT, silence the engine's shutdown logging first, then interrupt as usual, so that
    what the user sees is only how to resume."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        quiet_shutdown()
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


def quiet_shutdown() -> None:
    """Silence Dask's logging of the tasks an interrupt cancels ("Task ... cancelled", CancelledError)
    while its cluster shuts down: they are expected, not errors."""
    _critical_only("distributed", "dask", "tornado", "asyncio")


def _critical_only(*names: str) -> None:
    import logging

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
