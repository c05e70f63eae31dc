"""One writer at a time per store.

A local store gets a lock file beside it (``STORE.lock``, :mod:`crossfuse.lock`), created exclusively and
holding who took it: host, pid, start time and command. A second build refuses at once, naming
the holder. A lock whose holder is gone is not left to block forever: on the same host a dead
pid is detected and the lock taken over (with a warning); a lock from another host is broken
only with ``--break-lock``, since its process cannot be checked from here.

Object stores (``s3://`` ...) have no exclusive create that every fsspec backend honours, so there
the rule is documented (one build per ``--out``) and checked at finalisation instead: each build
writes a random writer token into the store's scratch group when it opens it, and a build whose
token has been replaced by another writer's refuses to mark the store complete.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from crossfuse import lock as _lock
from crossfuse.errors import StoreLockedError


def lock_path(url: str) -> str | None:
    """The lock file of a local store (None for a URL: object stores are checked at finalisation)."""
    return None if "://" in url else f"{url.rstrip(os.sep)}.lock"


def new_token() -> str:
    """A writer token, unique to one build."""
    return uuid.uuid4().hex


@contextmanager
def store_lock(url: str, *, break_lock: bool = False) -> Iterator[None]:
    """Hold the writer's lock of the store at ``url`` for the block (a no-op for URLs; see the
    module docstring). The parent folder must exist and be writable."""
    path = lock_path(url)
    if path is None:
        yield
        return

    def busy(who: str) -> StoreLockedError:
        return StoreLockedError(f"{url} is being written by another build: {who} Wait for it to finish, or choose "
                                "another --out.")

    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        _lock.acquire(path, subject=url, busy=busy, break_lock=break_lock)
    except PermissionError as exc:
        raise StoreLockedError(f"cannot write beside {url} ({exc}); choose an --out in a folder you can write to.") \
            from exc
    try:
        yield
    finally:
        _lock.release(path)
