"""Writing files whole or not at all, with one clear error when the disk is full.

Every writer of a final file (checkpoints, fused images, score tables, plots, reports) writes a
temporary file beside it and renames it into place, so that a kill, a full disk or a file-size
limit never leaves half a file under the final name. The temporary name is private to the
process (several may share a folder) and fits wherever the final name fits: a name too long to
take a suffix gets a short hashed one.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from contextlib import contextmanager

from crossfuse.errors import WriteError

#: The longest file name (in bytes) most file systems take.
NAME_MAX = 255

_NO_SPACE = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large (a file-size limit)",
             getattr(errno, "EDQUOT", -1): "disk quota exceeded"}


def temporary_name(path: str) -> str:
    """A temporary path beside ``path``, private to this process, whose name is never longer
    than the final one allows (``NAME_MAX`` bytes)."""
    folder, name = os.path.split(path)
    suffix = f".{os.getpid()}.tmp"
    if len(os.fsencode(name + suffix)) > NAME_MAX:
        name = "." + hashlib.sha256(os.fsencode(name)).hexdigest()[:24]
    return os.path.join(folder, name + suffix)


def out_of_space(exc: BaseException) -> str:
    """``"no space left on the device"`` and the like when ``exc`` (or what caused it) is a full
    disk or a file-size limit, else ``""``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return _NO_SPACE[exc.errno]
        text = str(exc)
        if "No space left" in text or "File too large" in text:
            return "no space left on the device" if "No space" in text else _NO_SPACE[errno.EFBIG]
        exc = exc.__cause__ or exc.__context__
    return ""


def write_error(path: str, exc: BaseException) -> WriteError | None:
    """The :class:`WriteError` to raise for ``exc`` met while writing ``path`` (a full disk or
    file-size limit), or None when ``exc`` is something else."""
    reason = out_of_space(exc)
    if not reason:
        return None
    return WriteError(f"cannot write {path}: {reason}. Free some space (or raise the limit) and run the command "
                      "again; nothing half-written is kept under a final name.")


@contextmanager
def reported(path: str) -> Iterator[None]:
    """Raise a full disk or file-size limit met in the block as :class:`WriteError` naming
    ``path`` (for a file written in place, such as an appended log)."""
    try:
        yield
    except OSError as exc:
        raise write_error(path, exc) or exc


@contextmanager
def replacing(path: str) -> Iterator[str]:
    """Yield a temporary path to write; on leaving the block it replaces ``path``. On any error
    (an interrupt included) the temporary file is removed and ``path`` is left as it was; a full
    disk or a file-size limit is raised as :class:`WriteError` naming ``path``."""
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        error = write_error(path, exc)
        if error is not None:
            raise error from exc
        raise


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole (see :func:`replacing`)."""
    with replacing(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole (see :func:`replacing`)."""
    write_bytes(path, text.encode("utf-8"))


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, so that it dumps as strict JSON
    (``NaN`` and ``Infinity`` are Python's extensions, which other JSON readers refuse)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_json(path: str, value: Any) -> None:
    """Write ``value`` as indented strict JSON (:func:`strict_json`: NaN and infinities as null)."""
    write_text(path, json.dumps(strict_json(value), indent=1, allow_nan=False))


def write_csv(path: str, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV table (``header``, then ``rows``) to ``path`` whole (see :func:`replacing`)."""
    buffer = io.StringIO(newline="")
    w = csv.writer(buffer)
    w.writerow(header)
    w.writerows(rows)
    write_text(path, buffer.getvalue())
