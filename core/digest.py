"""The two digests crossfuse records: of plain data (as canonical JSON) and of a file's bytes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import fsspec


def json_sha256(value: Any) -> str:
    """sha256 of ``value`` as JSON with sorted keys (anything not JSON-native as ``str``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(url: str) -> str:
    """sha256 of a local file or fsspec URL, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def object_digest(url: str) -> tuple[int, str]:
    """(size in bytes, sha256) of one stored object (a Zarr chunk file)."""
    fs, path = fsspec.core.url_to_fs(url)
    data = fs.cat_file(path)
    return len(data), hashlib.sha256(data).hexdigest()
