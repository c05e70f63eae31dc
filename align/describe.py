"""Reading back a corpus: a summary of what it holds (``inspect``) and integrity checks (``verify``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from crossfuse import manifest as _manifest
from crossfuse.schema import ARRAYS, open_corpus


def describe(url: str) -> dict[str, Any]:
    """What the corpus at ``url`` holds and how it was made: its attributes plus array layout."""
    group, meta = open_corpus(url)
    arrays = {}
    for name in ARRAYS:
        arr = group[name]
        arrays[name] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "chunks": list(arr.chunks),
                        "codecs": [type(c).__name__ for c in arr.compressors]}
    out = dict(meta)  # every attribute as stored ("sources" stays the list it is)
    out["arrays"] = arrays
    out["store"] = url
    return out


@dataclass(frozen=True, kw_only=True)
class VerifyReport:
    """Outcome of :func:`verify`: ``problems`` is empty when the corpus is sound."""

    store: str
    patches: int
    chunks_read: int
    sources_checked: int
    sources_unreachable: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(url: str, *, check_sources: bool = True, root: str | None = None) -> VerifyReport:
    """Check schema, completeness and shapes; read every chunk back; check value ranges and the
    recorded after-alignment means; and, where the source images are reachable (under the
    recorded root or ``root``), their sha256."""
    group, meta = open_corpus(url)  # schema, completeness, dtypes and shapes
    problems: list[str] = []
    n = int(meta["counts"]["patches"])
    sources = meta.get("sources", [])
    chunk = group["vis"].chunks[0]
    sums = np.zeros(3, dtype=np.float64)
    chunks_read = 0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        try:
            vis = group["vis"][start:stop]
            group["ir"][start:stop]
        except Exception as exc:  # any codec or I/O failure is a finding, not a crash
            problems.append(f"chunk at rows {start}:{stop} cannot be read: {exc}")
            continue
        chunks_read += 1
        sums += vis.sum(axis=(0, 2, 3), dtype=np.float64)
    source = group["source"][...]
    if n and (source.min() < 0 or source.max() >= len(sources)):
        problems.append(f"'source' refers to rows outside the {len(sources)} recorded sources")
    distance = group["distance"][...]
    if n and (not np.all(np.isfinite(distance)) or distance.min() < 0):
        problems.append("'distance' holds negative or non-finite values")
    if n and chunks_read * chunk >= n:
        patch = meta["params"]["patch"]
        actual = sums / (n * patch * patch)
        recorded = np.asarray(meta["means_after"], dtype=np.float64)
        if np.max(np.abs(actual - recorded)) > 1e-3:
            problems.append(f"visible means {actual.round(4).tolist()} differ from the recorded "
                            f"means_after {recorded.round(4).tolist()}")
    checked = unreachable = 0
    if check_sources:
        base = root or (meta.get("aux") or {}).get("root")
        for src in sources:
            for side in ("ir", "vis"):
                path = _manifest.join(base, src[side]) if base else src[side]
                try:

                    with fsspec.open(path, "rb") as fh:
                        digest = hashlib.sha256(fh.read()).hexdigest()
                except (FileNotFoundError, PermissionError, IsADirectoryError):
                    unreachable += 1
                    continue
                checked += 1
                if digest != src[f"{side}_sha256"]:
                    problems.append(f"source {path} has sha256 {digest}, the store recorded {src[f'{side}_sha256']}")
        if unreachable:
            problems.append(f"{unreachable} of {2 * len(sources)} source files could not be read under {base}, so "
                            "they were not checked; pass --root DIR where the source images are, or --no-sources "
                            "to check the store alone")
    return VerifyReport(store=url, patches=n, chunks_read=chunks_read, sources_checked=checked,
                        sources_unreachable=unreachable, problems=problems)
