"""Reading crossfuse corpora from any PyTorch code: the public, stable API (one import). CrossFuse's
own trainer reads through it too.

A corpus is built once and reused by many models::

    from crossfuse import corpus

    data = corpus.PatchDataset(["msrs-to-roadscene.zarr"], visible="y")   # map-style, random access
    item = data[0]        # an Item: {"vis": (1, P, P) float32 Y in [0, 1], "ir", "source", "origin", ...}
    data.records[0].gamma # how the corpus was made (a crossfuse.schema.CorpusRecord)

    batches = corpus.PatchLoader(["a.zarr", "b.zarr"], batch_size=32, seed=0, weights=[1, 0.5])
    for epoch in range(10):
        batches.set_epoch(epoch)
        for batch in batches:  # a Batch: {"vis": (B, 3, P, P) uint8, "ir": (B, 1, P, P) uint8, ...}
            ...
            state = batches.state_dict()   # save it with your checkpoint: a mid-epoch resume point

Fields and their dtypes (whatever the corpus): ``vis`` uint8 (3, P, P) RGB with ``visible="rgb"``
(the default: convert on your device, a quarter of float32's bytes to move) or float32 (1, P, P)
luma ``(0.299 R + 0.587 G + 0.114 B) / 255`` with ``visible="y"``; ``ir`` uint8 (1, P, P), or
float32 / 255 with ``visible="y"``; ``source`` int32 (index into ``records[corpus].sources``);
``origin`` int32 (2,) the patch's (y, x) in that source; ``means`` float32 (3,) its stored RGB
means (0-255, before the gamma correction); ``distance`` float32 its L1 distance to the target's
mean (0 in a packed corpus); ``corpus`` int64 which store. Batches carry the same with a leading
batch axis. The loader reads whole chunks (or holds small corpora in memory), shuffles
deterministically from (seed, epoch), and gives DDP ranks and loader workers disjoint shares,
every rank the same number of batches.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypedDict

import numpy as np
import torch

from crossfuse.corpus.reading import FIELDS, Block, Corpora, PatchBatches, Subset, plan_epoch, to_model_inputs
from crossfuse.errors import ParameterError
from crossfuse.schema import CorpusRecord

__all__ = ["Batch", "ChunkSampler", "Item", "PatchDataset", "PatchLoader", "PatchStream", "Subset", "VISIBLE",
           "FIELDS", "to_model_inputs"]

#: How the visible patch is given: the stored RGB (uint8) or luma Y (float32 in [0, 1]).
VISIBLE = ("rgb", "y")
_NAMES = FIELDS + ("corpus",)


class Item(TypedDict):
    """One patch of :class:`PatchDataset` (dtypes in the module docstring)."""

    vis: torch.Tensor
    ir: torch.Tensor
    source: int
    origin: torch.Tensor
    means: torch.Tensor
    distance: float
    corpus: int


class Batch(TypedDict, total=False):
    """One batch of :class:`PatchLoader`: the ``fields`` asked for, each with a leading batch axis."""

    vis: torch.Tensor
    ir: torch.Tensor
    source: torch.Tensor
    origin: torch.Tensor
    means: torch.Tensor
    distance: torch.Tensor
    corpus: torch.Tensor


def _check_visible(visible: str) -> None:
    if visible not in VISIBLE:
        raise ParameterError(f"visible must be one of {VISIBLE}, got {visible!r}.")


def _pixels(vis: torch.Tensor, ir: torch.Tensor, visible: str) -> tuple[torch.Tensor, torch.Tensor]:
    return to_model_inputs(vis, ir) if visible == "y" else (vis, ir)


class PatchDataset(torch.utils.data.Dataset):
    """Every patch of one or more corpora, by index (corpus after corpus, rows in stored order).

    Items are :class:`Item` dicts, passed through ``transform`` when given; ``subset``
    (:class:`Subset`) reads part of each corpus, numbered from 0 in stored order. Reads go through
    whole chunks, the last ``cache_chunks`` of which are kept, so indices near each other cost
    one read; corpora that fit in memory (or ``in_memory=True``) are read once. Picklable for
    loader workers. For random access in a DataLoader prefer :class:`PatchLoader`, whose
    shuffle keeps to chunks (a plain ``shuffle=True`` here reads a chunk per item).
    """

    def __init__(self, stores: Sequence[str], *, visible: str = "rgb", in_memory: bool | None = None,
                 cache_chunks: int = 8, transform: Callable[[Item], Any] | None = None,
                 subset: Subset | None = None, cache_dir: str | None = None, cache_bytes: int | None = None) -> None:
        _check_visible(visible)
        self.corpora = Corpora(stores, in_memory=in_memory, subset=subset, cache_dir=cache_dir,
                               cache_bytes=cache_bytes)
        self.visible, self.cache_chunks, self.transform = visible, cache_chunks, transform
        self.offsets = np.concatenate([[0], np.cumsum(self.corpora.sizes())])
        self._cache: OrderedDict[Block, tuple[np.ndarray, ...]] = OrderedDict()

    @property
    def records(self) -> list[CorpusRecord]:
        """How each corpus was made, in the order of ``stores``."""
        return self.corpora.records

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": OrderedDict()}

    def _block(self, corpus: int, row: int) -> tuple[np.ndarray, ...]:
        chunk, n = self.corpora.chunks[corpus], self.corpora.lengths[corpus]
        start = row // chunk * chunk
        block = Block(corpus=corpus, start=start, stop=min(n, start + chunk))
        if block not in self._cache:
            self._cache[block] = self.corpora.read(block, FIELDS)
            while len(self._cache) > self.cache_chunks:
                self._cache.popitem(last=False)
        self._cache.move_to_end(block)
        return self._cache[block]

    def __getitem__(self, index: int) -> Item:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"patch {index} is out of range for {len(self)} patches")
        corpus = int(np.searchsorted(self.offsets, index, side="right") - 1)
        row = index - int(self.offsets[corpus])
        if self.corpora.kept[corpus] is not None:
            row = int(self.corpora.kept[corpus][row])  # the stored row of the subset's row-th patch
        arrays = dict(zip(FIELDS, self._block(corpus, row)))
        local = row % self.corpora.chunks[corpus]
        vis, ir = _pixels(torch.from_numpy(arrays["vis"][local:local + 1]),
                          torch.from_numpy(arrays["ir"][local:local + 1]), self.visible)
        item: Item = {"vis": vis[0], "ir": ir[0], "source": int(arrays["source"][local]),
                      "origin": torch.from_numpy(arrays["origin"][local].copy()),
                      "means": torch.from_numpy(arrays["means"][local].copy()),
                      "distance": float(arrays["distance"][local]), "corpus": corpus}
        return self.transform(item) if self.transform is not None else item


class ChunkSampler(torch.utils.data.Sampler):
    """A shuffling sampler for :class:`PatchDataset` that does not thrash its chunk cache: chunks
    are shuffled, and patches only within buffers of ``buffer_chunks`` chunks (the loader's own
    order, from (``seed``, epoch)), so ``DataLoader(data, sampler=ChunkSampler(data), ...)``
    reads each chunk about once per epoch where ``shuffle=True`` reads one per item. With
    ``rank``/``world`` each DDP rank gets a disjoint share of equal size. Call
    :meth:`set_epoch` before each epoch."""

    def __init__(self, dataset: PatchDataset, *, seed: int = 0, buffer_chunks: int = 4, rank: int | None = None,
                 world: int | None = None) -> None:
        _check_counts(buffer_chunks=buffer_chunks)
        self.dataset, self.seed, self.buffer_chunks = dataset, seed, buffer_chunks
        self.rank, self.world = _rank_world(rank, world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> np.ndarray:
        corpora = self.dataset.corpora
        plan = plan_epoch(corpora, seed=self.seed, epoch=self.epoch, batch_size=1, rank=self.rank, world=self.world,
                          buffer_chunks=self.buffer_chunks, drop_last=False)
        starts = np.array([b.start for b in plan.blocks], dtype=np.int64)
        owner = np.array([b.corpus for b in plan.blocks], dtype=np.int64)
        block, row = plan.block[plan.mine], plan.row[plan.mine]
        stored = starts[block] + row  # the patch's row in its store
        out = np.empty(len(stored), dtype=np.int64)
        for c, kept in enumerate(corpora.kept):  # the dataset numbers a subset's patches from 0
            mine = owner[block] == c
            out[mine] = self.dataset.offsets[c] + (stored[mine] if kept is None else np.searchsorted(kept, stored[mine]))
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        return len(self._indices())


class _Dicts(torch.utils.data.IterableDataset):
    """:class:`PatchBatches`' tuples as :class:`Batch` dicts, pixels converted and ``transform``
    applied per sample, all in the loader worker."""

    def __init__(self, batches: PatchBatches, visible: str, transform: Callable[[dict], Any] | None) -> None:
        super().__init__()
        self.batches, self.visible, self.transform = batches, visible, transform

    def __iter__(self) -> Iterator[Batch]:
        for columns in self.batches:
            batch = dict(zip(self.batches.fields, columns))
            if "vis" in batch and "ir" in batch:
                batch["vis"], batch["ir"] = _pixels(batch["vis"], batch["ir"], self.visible)
            if self.transform is not None:
                n = len(next(iter(batch.values())))
                samples = [self.transform({k: v[i] for k, v in batch.items()}) for i in range(n)]
                batch = torch.utils.data.default_collate(samples)
            yield batch


class PatchStream(torch.utils.data.IterableDataset):
    """The loader's samples for your own ``DataLoader(stream, batch_size=B, ...)``, with your
    ``collate_fn``, ``prefetch_factor`` and ``persistent_workers``: each worker yields the samples
    of its share of the epoch's batches in order, so batches of ``batch_size`` samples are
    exactly :class:`PatchLoader`'s (pass the same ``batch_size`` to both). :meth:`set_epoch` works
    with persistent workers too: the epoch lives in shared memory, read at each epoch's start.
    ``skip`` batches at the start of an epoch resume it midway. Other arguments as
    :class:`PatchLoader`'s."""

    def __init__(self, stores: Sequence[str], *, batch_size: int, seed: int = 0,
                 weights: Sequence[float] | None = None, visible: str = "rgb", fields: Sequence[str] = _NAMES,
                 rank: int | None = None, world: int | None = None, buffer_chunks: int = 4,
                 in_memory: bool | None = None, subset: Subset | None = None, cache_dir: str | None = None,
                 cache_bytes: int | None = None) -> None:
        import multiprocessing

        super().__init__()
        _check_visible(visible)
        rank, world = _rank_world(rank, world)
        self.corpora = Corpora(stores, weights, in_memory=in_memory, subset=subset, cache_dir=cache_dir,
                               cache_bytes=cache_bytes)
        self.batches = PatchBatches(self.corpora, batch_size=batch_size, seed=seed, rank=rank, world=world,
                                    buffer_chunks=buffer_chunks, fields=tuple(fields))
        self._dicts = _Dicts(self.batches, visible, None)
        self._shared = multiprocessing.RawArray("q", 2)  # epoch, batches to skip: seen by every worker

    def set_epoch(self, epoch: int, *, skip: int = 0) -> None:
        self._shared[0], self._shared[1] = epoch, skip
        self.batches.set_epoch(epoch, skip=skip)

    def __len__(self) -> int:
        """Samples this rank gets in the current epoch."""
        return len(self.batches) * self.batches.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self.batches.set_epoch(int(self._shared[0]), skip=int(self._shared[1]))
        for batch in self._dicts:
            n = len(next(iter(batch.values())))
            for i in range(n):
                yield {k: v[i] for k, v in batch.items()}


def _rank_world(rank: int | None, world: int | None) -> tuple[int, int]:
    """The DDP rank and world size: as given, or the process group's when one is initialised."""
    if rank is None or world is None:
        initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = torch.distributed.get_rank() if initialised else 0
        world = torch.distributed.get_world_size() if initialised else 1
    if not (_whole(world) and world >= 1 and _whole(rank) and 0 <= rank < world):
        raise ParameterError(f"rank must be a whole number in 0..world-1 and world at least 1, got rank {rank!r} "
                             f"of world {world!r}.")
    return rank, world


def _whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_counts(**values: Any) -> None:
    """A ParameterError naming the first of ``values`` that is not a whole number >= 1 (None passes)."""
    for name, value in values.items():
        if value is not None and not (_whole(value) and value >= 1):
            raise ParameterError(f"{name} must be a whole number of at least 1, got {value!r}.")


class PatchLoader:
    """Batches of one or more corpora for one epoch at a time, as :class:`Batch` dicts of the
    ``fields`` asked for (default: all), deterministic from (``seed``, epoch). ``weights`` sample
    each corpus that many times per epoch (fractions take a random share of its chunks);
    ``rank``/``world`` default to the torch.distributed process group when one is initialised;
    ``workers`` loader processes share the reading (``prefetch_factor`` batches each ahead).
    ``drop_last`` (default True) drops an epoch's incomplete last batch. ``transform`` is applied
    to each sample dict in the workers (then the batch is re-collated; costs a little);
    ``subset`` (:class:`Subset`) reads part of each corpus without copying it; ``cache_dir``
    keeps a remote corpus' chunks on local disk (at most ``cache_bytes`` each, least recently used
    dropped first), so that later epochs and worker processes read them from there.

    Call :meth:`set_epoch` before each epoch; ``len()`` is the number of batches this rank gets.
    :meth:`state_dict` after any batch is a resume point: :meth:`load_state_dict` on a new loader
    (any number of workers) and ``set_epoch`` of that epoch yield exactly the batches the
    uninterrupted epoch would have given from there."""

    def __init__(self, stores: Sequence[str], *, batch_size: int, seed: int = 0, weights: Sequence[float] | None = None,
                 visible: str = "rgb", fields: Sequence[str] = _NAMES, rank: int | None = None,
                 world: int | None = None, workers: int = 0, buffer_chunks: int = 4, in_memory: bool | None = None,
                 pin_memory: bool = False, prefetch_factor: int | None = None, drop_last: bool = True,
                 transform: Callable[[dict], Any] | None = None, subset: Subset | None = None,
                 cache_dir: str | None = None, cache_bytes: int | None = None) -> None:
        _check_visible(visible)
        _check_counts(batch_size=batch_size, buffer_chunks=buffer_chunks, cache_bytes=cache_bytes,
                      prefetch_factor=prefetch_factor)
        if not (_whole(workers) and workers >= 0):
            raise ParameterError(f"workers must be a whole number of at least 0, got {workers!r}.")
        rank, world = _rank_world(rank, world)
        self.corpora = Corpora(stores, weights, in_memory=in_memory, subset=subset, cache_dir=cache_dir,
                               cache_bytes=cache_bytes)
        self.visible = visible
        self.batches = PatchBatches(self.corpora, batch_size=batch_size, seed=seed, rank=rank, world=world,
                                    buffer_chunks=buffer_chunks, fields=tuple(fields), drop_last=drop_last)
        self._loader = torch.utils.data.DataLoader(_Dicts(self.batches, visible, transform), batch_size=None,
                                                   num_workers=workers, pin_memory=pin_memory,
                                                   prefetch_factor=prefetch_factor if workers else None)
        self._served = 0
        self._resume: tuple[int, int] | None = None

    @property
    def records(self) -> list[CorpusRecord]:
        """How each corpus was made, in the order of ``stores``."""
        return self.corpora.records

    @property
    def patch(self) -> int:
        """The corpora's patch size P."""
        return self.corpora.patch

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (from its first batch, or from the resume point loaded for it)."""
        skip = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        self.batches.set_epoch(epoch, skip=skip)
        self._served = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        if self._resume is not None:  # load_state_dict, then iterate: the remaining batches (torchdata's rule)
            self.set_epoch(self._resume[0])
        for batch in self._loader:
            self._served += 1
            yield batch

    def _identity(self) -> dict[str, Any]:
        b = self.batches
        return {"corpora": [r.record_sha256 or r.content_sha256() for r in self.corpora.records],
                "weights": list(self.corpora.weights), "seed": b.seed,
                "batch_size": b.batch_size, "rank": b.rank, "world": b.world, "buffer_chunks": b.buffer_chunks,
                "drop_last": b.drop_last, "subset": repr(self.corpora.subset)}

    def state_dict(self) -> dict[str, Any]:
        """Where this rank is: the epoch and the batches of it given out so far, and what the
        sequence depends on (checked on load)."""
        return {"epoch": self.batches.epoch, "batch": self.batches.skip + self._served, **self._identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`'s ``state``: the next iteration (or ``set_epoch`` of the
        saved epoch) gives the batches that epoch had left; ``set_epoch`` of another epoch starts
        that one afresh (torchdata's StatefulDataLoader rule). Refused (naming what differs) when
        the corpora (by the digest of their records, so a store rebuilt at the same path is other
        data and the same store by another path is the same), weights, seed, batch size, rank,
        world, buffer or drop_last differ: the sequence would not be the same; and when the state
        is not one (its epoch and batch must be whole numbers >= 0, the batch within the epoch)."""
        if not isinstance(state, dict):
            raise ParameterError(f"a loader state is a dict from state_dict(), got {type(state).__name__}.")
        for key in ("epoch", "batch"):
            if not (_whole(state.get(key)) and state[key] >= 0):
                raise ParameterError(f"the loader state's {key} must be a whole number >= 0, got "
                                     f"{state.get(key)!r}; the state is damaged (or not a loader's).")
        if "corpora" not in state and "stores" in state:
            raise ParameterError("that loader state names its corpora by path (an earlier crossfuse wrote it), "
                                 "which cannot tell a rebuilt store from the one it was made on; start the epoch "
                                 "afresh with set_epoch instead of resuming.")
        differs = {k: (state.get(k), v) for k, v in self._identity().items() if state.get(k) != v}
        if differs:
            named = "; ".join(f"{k}: {was!r} in the state, {now!r} here" for k, (was, now) in differs.items())
            raise ParameterError(f"cannot resume this loader from that state: {named}. Resume with the same "
                                 "settings (the number of workers may differ).")
        epoch, batch = int(state["epoch"]), int(state["batch"])
        self.batches.set_epoch(epoch)
        if batch > len(self.batches):
            raise ParameterError(f"the loader state's batch {batch} lies beyond epoch {epoch}'s {len(self.batches)} "
                                 "batches; the state is damaged.")
        self._resume = (epoch, batch)
