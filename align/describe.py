"""Reading back a corpus: a summary of what it holds (``inspect``) and integrity checks (``verify``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossfuse import manifest as _manifest
from crossfuse.digest import file_sha256, object_digest
from crossfuse.schema import ARRAYS, CorpusRecord, chunk_count, chunk_url, missing_chunks, open_corpus, stats_digest


@dataclass(frozen=True, kw_only=True)
class ArrayLayout:
    """How one array is stored: dtype, shape, chunk shape and codec names."""

    dtype: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    codecs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape), "chunks": list(self.chunks), "codecs": list(self.codecs)}


@dataclass(frozen=True, kw_only=True)
class Description:
    """What ``inspect`` shows: the corpus ``record`` and the ``arrays``' layout."""

    store: str
    record: CorpusRecord
    arrays: dict[str, ArrayLayout]

    def to_json(self) -> dict[str, Any]:
        """Every attribute as stored, plus ``arrays`` and ``store``."""
        return {**self.record.to_json(), "arrays": {n: a.to_json() for n, a in self.arrays.items()},
                "store": self.store}


def describe(url: str) -> Description:
    """What the corpus at ``url`` holds and how it was made: its record plus array layout."""
    group, record = open_corpus(url)
    arrays = {name: ArrayLayout(dtype=str(group[name].dtype), shape=tuple(group[name].shape),
                                chunks=tuple(group[name].chunks),
                                codecs=tuple(type(c).__name__ for c in group[name].compressors))
              for name in ARRAYS}
    return Description(store=url, record=record, arrays=arrays)


@dataclass(frozen=True, kw_only=True)
class VerifyReport:
    """Outcome of :func:`verify`: ``problems`` is empty when the corpus is sound."""

    store: str
    patches: int
    chunks_read: int
    sources_checked: int
    sources_unreachable: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_chunks(group, record: CorpusRecord, problems: list[str]) -> int:
    """Read every chunk back and compare the visible means with the recorded ones; returns the
    number of chunks read."""
    n, chunk = record.counts.patches, group["vis"].chunks[0]
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
    if n and chunks_read * chunk >= n:
        actual = sums / (n * record.params.patch ** 2)
        recorded = np.asarray(record.means_after, dtype=np.float64)
        if np.max(np.abs(actual - recorded)) > 1e-3:
            problems.append(f"visible means {actual.round(4).tolist()} differ from the recorded "
                            f"means_after {recorded.round(4).tolist()}")
    return chunks_read


def _check_rows(group, record: CorpusRecord, problems: list[str]) -> None:
    if not record.counts.patches:
        return
    source = group["source"][...]
    if source.min() < 0 or source.max() >= len(record.sources):
        problems.append(f"'source' refers to rows outside the {len(record.sources)} recorded sources")
    distance = group["distance"][...]
    if not np.all(np.isfinite(distance)) or distance.min() < 0:
        problems.append("'distance' holds negative or non-finite values")


def _check_sources(record: CorpusRecord, root: str | None, problems: list[str]) -> tuple[int, int]:
    """sha256 of every source image under ``root`` (default: the recorded one); returns
    (checked, unreachable)."""
    base = root or (record.aux.root if record.aux else None)
    checked = unreachable = 0
    seen: set[tuple[str, str]] = set()
    for src in record.sources:
        for rel, expected in ((src.ir, src.ir_sha256), (src.vis, src.vis_sha256)):
            if (rel, expected) in seen:  # one file holding both (an imported H5): checked once, counted once
                continue
            seen.add((rel, expected))
            path = _manifest.join(base, rel) if base else rel
            try:
                digest = file_sha256(path)
            except (FileNotFoundError, PermissionError, IsADirectoryError):
                unreachable += 1
                continue
            checked += 1
            if digest != expected:
                problems.append(f"source {path} has sha256 {digest}, the store recorded {expected}")
    if unreachable:
        problems.append(f"{unreachable} of {len(seen)} source files could not be read under {base}, so "
                        "they were not checked; pass --root DIR where the source images are, or --no-sources "
                        "to check the store alone")
    return checked, unreachable


def _check_digests(url: str, group, record: CorpusRecord, problems: list[str], notes: list[str]) -> None:
    """Every chunk present, of its recorded size and sha256 (a chunk swapped, truncated, or
    changed by one byte that still decompresses is found), and the record's own digest (an
    edited attribute is found)."""
    problems += missing_chunks(url, group, record)
    if record.chunks is None:
        if record.record_sha256 is not None:
            problems.append("the record's 'chunks' digests were removed (its record_sha256 is there, which crossfuse "
                            "writes only together with them): the chunks cannot be checked; rebuild the corpus, or "
                            "restore its zarr.json")
        else:
            notes.append("this store records no digests (made before crossfuse recorded them): chunks were read "
                         "back but not checked against digests, nor its attributes; rebuild it to record them")
        return
    for name in ARRAYS:
        recorded = record.chunks.get(name, ())
        expected = chunk_count(group[name].shape[0], group[name].chunks[0])
        if len(recorded) != expected:
            problems.append(f"array '{name}' has {expected} chunks but the record lists {len(recorded)} digests")
            continue
        for index, (size, sha) in enumerate(recorded):
            try:
                actual = object_digest(chunk_url(url, group[name], index))
            except FileNotFoundError:
                continue  # reported as missing above
            if actual[1] != sha and actual[0] == size:
                problems.append(f"array '{name}' chunk {index} differs from what was written (sha256 {actual[1][:12]}, "
                                f"recorded {sha[:12]}): corrupted, or swapped with another chunk")
    if record.record_sha256 is None:
        problems.append("the record's own digest (record_sha256) was removed, though its chunk digests are there "
                        "(crossfuse writes both): its attributes cannot be checked; rebuild the corpus, or restore "
                        "its zarr.json")
    elif record.content_sha256() != record.record_sha256:
        problems.append("the store's attributes were changed after the build (their digest no longer matches the "
                        "recorded record_sha256); rebuild the corpus, or restore its zarr.json")
    problems += stats_problems(group, record, notes)


def stats_problems(group, record: CorpusRecord, notes: list[str] | None = None) -> list[str]:
    """What is wrong with an aligned corpus' ``stats`` group (the patch means its report draws),
    judged by the recorded ``stats_sha256``; a store made before crossfuse digested it gets a
    note in ``notes`` instead."""
    if record.kind != "aligned":
        return []
    if record.stats_sha256 is None:
        if notes is not None:
            notes.append("this store records no digest of its 'stats' group (made before crossfuse recorded it): the "
                         "target and pool patch means the report draws were not checked; rebuild it to record it")
        return []
    try:
        actual = stats_digest(group)
    except Exception as exc:  # an undecodable stats chunk is a finding, not a crash
        return [f"the 'stats' group cannot be read: {exc}"]
    if actual is None:
        return ["the 'stats' group (target and pool patch means, which the report draws) was deleted; rebuild the corpus"]
    if actual != record.stats_sha256:
        return ["the 'stats' group (target and pool patch means, which the report draws) differs from what the build "
                "wrote: an array, a chunk or its attributes were changed or deleted; rebuild the corpus"]
    return []


def verify(url: str, *, check_sources: bool = True, root: str | None = None) -> VerifyReport:
    """Check schema, completeness, attribute types and shapes; every chunk present with the size
    and sha256 recorded when it was written, and the attributes' digest; read every chunk back;
    check value ranges and the recorded after-alignment means; and the sha256 of the source images
    (under the recorded root or ``root``): sources that cannot be read are a problem, since they
    were not checked."""
    group, record = open_corpus(url)  # schema, completeness, attribute types, dtypes and shapes
    problems: list[str] = []
    notes: list[str] = []
    _check_digests(url, group, record, problems, notes)
    chunks_read = _check_chunks(group, record, problems)
    _check_rows(group, record, problems)
    checked, unreachable = _check_sources(record, root, problems) if check_sources else (0, 0)
    return VerifyReport(store=url, patches=record.counts.patches, chunks_read=chunks_read, sources_checked=checked,
                        sources_unreachable=unreachable, problems=problems, notes=notes)
