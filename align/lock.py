"""One writer at a time per store.

A local store gets a lock file beside it (``STORE.lock``), created exclusively (``O_EXCL``) and
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

import datetime as _dt
import json
import os
import socket
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from crossfuse.errors import StoreLockedError


def lock_path(url: str) -> str | None:
    """The lock file of a local store (None for a URL: object stores are checked at finalisation)."""
    return None if "://" in url else f"{url.rstrip(os.sep)}.lock"


def new_token() -> str:
    """A writer token, unique to one build."""
    return uuid.uuid4().hex


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder(path: str) -> dict:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return {}


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('started', '?')}"
            f" ({holder.get('command', '?')})")


def _try_create(path: str) -> bool:
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
          "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300]}
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump(me, fh)
    return True


def _acquire(path: str, url: str, break_lock: bool) -> None:
    for _ in range(3):  # a stale lock removed by us may be taken by another writer first
        if _try_create(path):
            return
        holder = _holder(path)
        same_host = holder.get("host") == socket.gethostname()
        stale = same_host and isinstance(holder.get("pid"), int) and not _alive(holder["pid"])
        if not (stale or break_lock):
            hint = ("" if same_host else " It was taken on another host, so it cannot be checked from here: if "
                    "that build is gone, pass --break-lock.")
            raise StoreLockedError(f"{url} is being written by another build: {_describe(holder)}. Wait for it to "
                                   f"finish, or choose another --out.{hint}")
        warnings.warn(f"{url}: {'broke the lock' if not stale else 'took over a stale lock'} of "
                      f"{_describe(holder)}", stacklevel=4)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    raise StoreLockedError(f"{url}: could not take its lock {path}; another build keeps taking it.")


@contextmanager
def store_lock(url: str, *, break_lock: bool = False) -> Iterator[None]:
    """Hold the writer's lock of the store at ``url`` for the block (a no-op for URLs; see the
    module docstring). The parent folder must exist and be writable."""
    path = lock_path(url)
    if path is None:
        yield
        return
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        _acquire(path, url, break_lock)
    except PermissionError as exc:
        raise StoreLockedError(f"cannot write beside {url} ({exc}); choose an --out in a folder you can write to.") \
            from exc
    try:
        yield
    finally:
        if _holder(path).get("pid") == os.getpid():
            os.unlink(path)
