"""Exclusive lock files: one writer at a time for a store or a run folder.

A lock is a small JSON file created exclusively (``O_EXCL``) that says who took it: host, pid,
start time and command. A second writer is refused at once with the holder named. A lock whose
holder is gone does not block forever: on the same host a dead pid is detected and the lock is
taken over (a warning is logged); a lock from another host is broken only when asked
(``break_lock``), since its process cannot be checked from here.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import sys
from collections.abc import Callable

log = logging.getLogger("crossfuse")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def holder(path: str) -> dict:
    """Who holds the lock file ``path`` (an empty dict when it is gone or unreadable)."""
    try:
        with open(path) as fh:
            found = json.load(fh)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def describe(who: dict) -> str:
    """``pid N on HOST, since TIME (COMMAND)``."""
    return (f"pid {who.get('pid', '?')} on {who.get('host', '?')}, since {who.get('started', '?')}"
            f" ({who.get('command', '?')})")


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


def acquire(path: str, *, subject: str, busy: Callable[[str], Exception], break_lock: bool = False) -> None:
    """Take the lock file ``path`` guarding ``subject`` (named in the log). When it is held by a
    live process, or by one on another host without ``break_lock``, raise ``busy(who)`` with the
    holder described (and, for another host, how to break it)."""
    for _ in range(3):  # a stale lock removed by us may be taken by another writer first
        if _try_create(path):
            return
        who = holder(path)
        same_host = who.get("host") == socket.gethostname()
        stale = same_host and isinstance(who.get("pid"), int) and not _alive(who["pid"])
        if not (stale or break_lock):
            hint = ("" if same_host or not who else " It was taken on another host, so it cannot be checked from "
                    "here: if that process is gone, pass --break-lock.")
            raise busy(describe(who) + "." + hint)
        log.warning("%s: %s of %s", subject, "took over a stale lock" if stale else "broke the lock", describe(who))
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    raise busy(f"no one for long: its lock {path} keeps being taken by others.")


def release(path: str) -> None:
    """Remove the lock file ``path`` if this process holds it."""
    if holder(path).get("pid") == os.getpid():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

