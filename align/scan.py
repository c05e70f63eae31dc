"""Scanning a dataset on Dask: every pair cut into patches, per-patch statistics kept in the
store's scratch group batch by batch, then gathered as plain arrays (:class:`ScanResult`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from crossfuse.align import store as _store
from crossfuse.align import tasks
from crossfuse.align.tasks import ScannedPair
from crossfuse.align.config import BuildParams, EngineConfig
from crossfuse.align.engine import completed
from crossfuse.errors import ManifestError, PairError, ParameterError
from crossfuse.manifest import Manifest
from crossfuse.progress import Progress
from crossfuse.schema import Problem


@dataclass(frozen=True, kw_only=True)
class ScanResult:
    """Every patch of one dataset as plain arrays, in scan order (pair, then row-major origin)."""

    origins: np.ndarray   # (n, 2) int32
    means: np.ndarray     # (n, 3) float64
    pair: np.ndarray      # (n,) int32, index into the manifest's pairs
    batch: np.ndarray     # (n,) int32, scan batch holding the patch
    local: np.ndarray     # (n,) int64, row within that batch
    pairs: list[ScannedPair]  # pairs read successfully, in manifest order
    problems: list[Problem]
    hist: np.ndarray | None = None  # (3, 256) visible pixel counts per channel (None: a scan made before them)
    yhist: np.ndarray | None = None  # (256,) their luma's
    luma: np.ndarray | None = None  # (5,) patches and sums of luma mean, mean^2, sd, sd^2 (--descriptor luma)


@dataclass(frozen=True, kw_only=True)
class PendingScan:
    """A dataset's scan tasks, submitted: ``futures`` maps each to its batch of pairs; the
    dataset has ``batches`` batches in all, some perhaps scanned by an earlier run."""

    role: str
    manifest: Manifest
    batches: int
    futures: dict
    skip_bad: bool
    label: str


def batches(manifest: Manifest, size: int) -> list[tuple[int, Manifest]]:
    return [(first, dataclasses.replace(manifest, pairs=manifest.pairs[first:first + size]))
            for first in range(0, len(manifest.pairs), size)]


def submit(client, url: str, role: str, manifest: Manifest, params: BuildParams, engine: EngineConfig,
           *, stash: bool, skip_bad: bool, label: str, drop_low_contrast: bool = False) -> PendingScan:
    """Submit the scan of every batch of ``manifest`` not already in the scratch group; ``stash``
    keeps the patches' pixels too (for the pool the corpus is written from); ``drop_low_contrast``
    leaves out low-contrast patches (a build's target keeps them all: its statistics are of the
    target as it is). An empty dataset is
    refused before the store is opened (``pipeline._check_not_empty``)."""
    parts = batches(manifest, engine.batch)
    futures = {client.submit(tasks.scan_batch, url, role, i, sub, first, patch=params.patch, stride=params.stride,
                             stash=stash, skip_bad=skip_bad, drop_low_contrast=drop_low_contrast, pure=False): sub
               for i, (first, sub) in enumerate(parts) if not _store.batch_done(url, role, i)}
    return PendingScan(role=role, manifest=manifest, batches=len(parts), futures=futures, skip_bad=skip_bad,
                       label=label)


def _wait(client, pending: PendingScan, engine: EngineConfig, progress: Progress) -> None:
    """Wait for the tasks; without ``skip_bad`` the first problem stops the build."""
    manifest, futures = pending.manifest, pending.futures
    problems: list[dict] = []
    with progress(pending.label, len(manifest.pairs)) as advance:
        advance(len(manifest.pairs) - sum(len(sub.pairs) for sub in futures.values()))
        for future, found in completed(client, futures, worker_timeout=engine.worker_timeout):
            problems.extend(found)
            advance(len(futures[future].pairs))
    if not pending.skip_bad:
        raise_problems(problems)


def raise_problems(problems: list[dict]) -> None:
    """The first problem a scan found as a :class:`PairError` (with how many more), if any."""
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise PairError(f"{first['error']}{more} Pass --skip-bad to record bad pairs and go on.",
                        pair_id=first["id"], path=first["path"])


def collect(client, url: str, pending: PendingScan, params: BuildParams, engine: EngineConfig, *,
            progress: Progress) -> ScanResult:
    """Wait for a submitted scan and gather its per-batch results as plain arrays."""
    _wait(client, pending, engine, progress)
    names = _store.SCAN_ARRAYS
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names + ("batch", "local")}
    pairs: list[ScannedPair] = []
    problems: list[Problem] = []
    hist: np.ndarray | None = np.zeros((3, 256), dtype=np.int64)
    yhist: np.ndarray | None = np.zeros(256, dtype=np.int64)
    luma: np.ndarray | None = np.zeros(5)
    for i in range(pending.batches):
        arrays, info = _store.read_batch(url, pending.role, i, names)
        hist = hist + np.asarray(info["hist"], dtype=np.int64) if hist is not None and "hist" in info else None
        yhist = yhist + np.asarray(info["yhist"], dtype=np.int64) if yhist is not None and "yhist" in info else None
        luma = luma + np.asarray(info["luma"]) if luma is not None and "luma" in info else None
        for n in names:
            parts[n].append(arrays[n])
        parts["batch"].append(np.full(len(arrays["pair"]), i, dtype=np.int32))
        parts["local"].append(np.arange(len(arrays["pair"]), dtype=np.int64))
        pairs.extend(ScannedPair.from_json(p) for p in info["pairs"])
        problems.extend(Problem(**p, dataset=pending.role) for p in info["problems"])
    result = ScanResult(**{n: np.concatenate(v) for n, v in parts.items()}, pairs=pairs, problems=problems, hist=hist,
                        yhist=yhist, luma=luma)
    if len(result.means) == 0:
        explain_empty(pending.manifest, pairs, params, problems)
    return result


class NothingLeftError(ParameterError):
    """A scan found no patch to keep; the build cannot make a corpus, so what it began is removed."""


def explain_empty(manifest: Manifest, pairs: list[ScannedPair], params: BuildParams,
                  problems: list[Problem] = ()) -> None:
    """Why a scan found no patch: no pair could be read (the problems listed), or the patch is
    larger than every image."""
    if not pairs:
        listed = "".join(f"\n  {p.id}: {p.error}" for p in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ManifestError(f"no pair of {manifest.origin} could be read ({len(problems)} skipped):{listed}{more}")
    dropped = sum(p.low_contrast for p in pairs)
    if params.drop_low_contrast and dropped:
        raise NothingLeftError(f"--drop-low-contrast left no patch of {manifest.origin}: all {dropped} were low-contrast "
                               "((p90 - p10) / p90 < 0.1 in visible Y or infrared, as CDDFuse's data preparation "
                               "drops them). Run without --drop-low-contrast, or check that the images are not "
                               "flat.")
    largest = max(pairs, key=lambda p: p.height * p.width)
    raise NothingLeftError(f"patch size {params.patch} is larger than every image of {manifest.origin} (the largest "
                         f"is {largest.width}x{largest.height}); use a smaller --patch.")
