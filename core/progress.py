"""How long-running library code reports progress without knowing who listens.

``progress(label, total)`` returns a context manager that yields ``advance(n, info="")``; the CLI
passes a progress bar, library callers may pass nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ContextManager

Advance = Callable[..., None]
Progress = Callable[[str, int], ContextManager[Advance]]


@contextmanager
def no_progress(label: str, total: int) -> Iterator[Advance]:
    """A ``Progress`` that shows nothing."""
    yield lambda n=1, info="": None
