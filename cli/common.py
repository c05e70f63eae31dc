"""Helpers shared by the commands: clean error reporting and progress bars on stderr."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from crossfuse.errors import CrossfuseError


def reports_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn crossfuse's own errors into ``Error: <message>`` and exit status 1, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CrossfuseError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


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
