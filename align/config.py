"""Frozen configuration of a build: what to compute (BuildParams) and where (EngineConfig)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from crossfuse.errors import ParameterError
from crossfuse.schema import Params

INDEXES = ("flat", "ivf")
#: How an aligned build chooses its K patches: ``topk``, the K closest to the target's mean
#: colour (the paper's); ``random``, K drawn uniformly from the pool with ``select_seed`` (the
#: data-volume control: as many patches, no alignment); ``match``, K whose distribution follows
#: the target's: each target patch takes its nearest pool patches in proportion
#: (:mod:`crossfuse.align.matching`).
SELECTIONS = ("topk", "random", "match")
#: What is applied to the chosen patches: ``gamma``, the per-channel gamma that matches the
#: target's mean (the paper's); ``none``, nothing (what the released script trains on); ``cdf``,
#: per-channel histogram matching of the selection's pixels to the target's (the monotone table
#: closest in W1, :mod:`crossfuse.align.histmatch`).
TRANSFORMS = ("gamma", "none", "cdf")
#: What ``--select topk`` measures distance on: ``rgb``, each patch's channel means (the paper's);
#: ``luma``, its luma mean and standard deviation, each divided by its spread over the target's
#: patches (what the network sees: level and contrast of Y).
DESCRIPTORS = ("rgb", "luma")


def selection_words(p, *, counted: bool = False) -> str:
    """How an aligned corpus (its recorded params ``p``) chose and changed its patches, in words;
    ``counted``: with its K and, for Top-K, its index."""
    k = str(p.k) if counted else "K"
    index = f" ({p.index} index)" if counted else ""
    chosen = {"random": f"{k} drawn at random (seed {p.select_seed})",
              "match": f"{k} following the target's distribution of RGB means"}.get(
        p.select, f"Top-{k} by L1 distance of "
        + ("luma mean and sd, scaled" if p.descriptor == "luma" else "RGB means") + index)
    return chosen + {"none": "; not transformed", "cdf": "; histogram-matched to the target's pixels"}.get(
        p.transform, "; gamma-corrected")


@dataclass(frozen=True, kw_only=True)
class BuildParams:
    """Parameters that determine a corpus' contents (all recorded in the store).

    ``patch``/``stride`` in pixels (paper code: 64 / 200); ``k`` patches retrieved (paper: 800
    or 1000); ``index`` "flat" (exact) or "ivf" (approximate, ``nlist`` lists, ``nprobe`` probed);
    ``chunk`` patches per Zarr chunk along N; ``drop_low_contrast`` leaves out the patches
    CDDFuse's data preparation drops (:func:`crossfuse.align.patches.low_contrast`), from a
    packed dataset or an aligned build's auxiliary pool.
    """

    patch: int = 64
    stride: int = 200
    k: int = 800
    index: str = "flat"
    nlist: int = 64
    nprobe: int = 8
    chunk: int = 256
    drop_low_contrast: bool = False
    select: str = "topk"
    transform: str = "gamma"
    select_seed: int = 0
    descriptor: str = "rgb"

    def __post_init__(self) -> None:
        for name in ("patch", "stride", "k", "nlist", "nprobe", "chunk"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive integer, got {value!r}.")
        if not isinstance(self.drop_low_contrast, bool):
            raise ParameterError(f"drop_low_contrast must be true or false, got {self.drop_low_contrast!r}.")
        if self.select not in SELECTIONS:
            raise ParameterError(f"select must be one of {SELECTIONS}, got {self.select!r}.")
        if self.transform not in TRANSFORMS:
            raise ParameterError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}.")
        if isinstance(self.select_seed, bool) or not isinstance(self.select_seed, int) or self.select_seed < 0:
            raise ParameterError(f"select_seed must be a non-negative integer, got {self.select_seed!r}.")
        if self.descriptor not in DESCRIPTORS:
            raise ParameterError(f"descriptor must be one of {DESCRIPTORS}, got {self.descriptor!r}.")
        if self.descriptor == "luma" and (self.select != "topk" or self.index != "flat"):
            raise ParameterError("--descriptor luma works with --select topk and the exact flat index only (for now); "
                                 f"got select {self.select!r}, index {self.index!r}.")
        if self.index not in INDEXES:
            raise ParameterError(f"index must be one of {INDEXES}, got {self.index!r}.")

    def record(self, *, kind: str) -> Params:
        """The parameters as the corpus record stores them (selection ones for an aligned corpus
        only, IVF ones for an IVF index only)."""
        drop = True if self.drop_low_contrast else None
        if kind != "aligned":
            return Params(patch=self.patch, stride=self.stride, chunk=self.chunk, drop_low_contrast=drop)
        ivf = self.index == "ivf"
        return Params(patch=self.patch, stride=self.stride, chunk=self.chunk, k=self.k, metric="L1", index=self.index,
                      nlist=self.nlist if ivf else None, nprobe=self.nprobe if ivf else None, drop_low_contrast=drop,
                      select=self.select, transform=self.transform,
                      select_seed=self.select_seed if self.select == "random" else None,
                      descriptor=self.descriptor if self.descriptor != "rgb" else None)

    @property
    def every_patch(self) -> bool:
        """Whether selection needs every pool patch's statistics (IVF retrieval, a random draw)
        rather than the running threshold's Top-K candidates."""
        return self.index == "ivf" or self.select in ("random", "match")

    def as_dict(self) -> dict[str, Any]:
        """Every parameter (``drop_low_contrast`` only when set, so that the fingerprints of
        builds without it are what they always were)."""
        out = asdict(self)
        for name, default in (("drop_low_contrast", False), ("select", "topk"), ("transform", "gamma"),
                              ("select_seed", 0), ("descriptor", "rgb")):
            if out[name] == default:  # fingerprints of builds made before these options are unchanged
                out.pop(name)
        return out


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Where the per-image work runs: ``scheduler`` address of a Dask cluster, or an
    in-process LocalCluster with ``workers`` threads (None: one per core). A build fails (and
    stays resumable) when its cluster has had no worker for ``worker_timeout`` seconds."""

    workers: int | None = None
    scheduler: str | None = None
    # Pairs per scan task: fewer, larger Dask tasks measured faster (BENCHMARKS.md); part of the
    # build's fingerprint, so a resumed build finds its own scratch.
    batch: int = 32
    #: Seconds without any connected worker after which a build fails instead of waiting.
    worker_timeout: float = 60.0
    #: Aligned builds: keep no pixels while scanning and read the pairs holding selected patches
    #: again after selection, so that scratch follows K instead of the auxiliary pool (measured:
    #: 18 MB instead of 806 MB at 30x in BENCHMARKS.md), at the cost of that second decode.
    low_scratch: bool = False

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ParameterError(f"workers must be >= 1, got {self.workers}.")
        if self.batch < 1:
            raise ParameterError(f"batch must be >= 1, got {self.batch}.")
