"""Reading crossfuse corpora from any PyTorch model: the public, stable API (one import).

A corpus is built once and reused by many models, CrossFuse's trainer among them::

    from crossfuse.fusion import corpus

    data = corpus.PatchDataset(["msrs-to-roadscene.zarr"], visible="y")   # map-style, random access
    item = data[0]        # {"vis": (1, P, P) float32 Y in [0, 1], "ir": (1, P, P), "source", "origin", "corpus"}
    data.records[0].gamma # how the corpus was made (a crossfuse.schema.CorpusRecord)

    batches = corpus.PatchLoader(["a.zarr", "b.zarr"], batch_size=32, seed=0, weights=[1, 0.5])
    for epoch in range(10):
        batches.set_epoch(epoch)
        for batch in batches:  # {"vis": (B, 3, P, P) uint8, "ir": (B, 1, P, P) uint8, "source", "origin", "corpus"}
            ...

``visible="rgb"`` gives the stored uint8 patches (convert on your device: half the bytes to
move); ``visible="y"`` gives float32 visible luma ``(0.299 R + 0.587 G + 0.114 B) / 255`` and
infrared / 255, as CrossFuse trains on them. ``source`` indexes ``records[corpus].sources``,
``origin`` is the patch's (y, x) in that source image. The loader reads whole chunks (or holds
small corpora in memory), shuffles deterministically from (seed, epoch), and gives DDP ranks and
loader workers disjoint shares, every rank the same number of batches.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from crossfuse.errors import ParameterError
from crossfuse.fusion.data import FIELDS, Block, Corpora, PatchBatches, to_model_inputs
from crossfuse.schema import CorpusRecord

__all__ = ["PatchDataset", "PatchLoader", "VISIBLE"]

#: How the visible patch is given: the stored RGB (uint8) or luma Y (float32 in [0, 1]).
VISIBLE = ("rgb", "y")
_NAMES = FIELDS + ("corpus",)


def _check_visible(visible: str) -> None:
    if visible not in VISIBLE:
        raise ParameterError(f"visible must be one of {VISIBLE}, got {visible!r}.")


def _pixels(vis: torch.Tensor, ir: torch.Tensor, visible: str) -> tuple[torch.Tensor, torch.Tensor]:
    return to_model_inputs(vis, ir) if visible == "y" else (vis, ir)


class PatchDataset(torch.utils.data.Dataset):
    """Every patch of one or more corpora, by index (corpus after corpus, rows in stored order).

    Items are dicts: ``vis`` (3, P, P) uint8 or (1, P, P) float32 (``visible``), ``ir`` likewise,
    ``source`` and ``corpus`` (ints) and ``origin`` (2,) int32. Reads go through whole chunks,
    the last ``cache_chunks`` of which are kept, so indices near each other cost one read;
    corpora that fit in memory (or ``in_memory=True``) are read once. Picklable for loader workers.
    """

    def __init__(self, stores: Sequence[str], *, visible: str = "rgb", in_memory: bool | None = None,
                 cache_chunks: int = 8) -> None:
        _check_visible(visible)
        self.corpora = Corpora(stores, in_memory=in_memory)
        self.visible, self.cache_chunks = visible, cache_chunks
        self.offsets = np.concatenate([[0], np.cumsum(self.corpora.lengths)])
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

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"patch {index} is out of range for {len(self)} patches")
        corpus = int(np.searchsorted(self.offsets, index, side="right") - 1)
        row = index - int(self.offsets[corpus])
        arrays = self._block(corpus, row)
        local = row % self.corpora.chunks[corpus]
        vis, ir = _pixels(torch.from_numpy(arrays[0][local:local + 1]), torch.from_numpy(arrays[1][local:local + 1]),
                          self.visible)
        return {"vis": vis[0], "ir": ir[0], "source": int(arrays[2][local]),
                "origin": torch.from_numpy(arrays[3][local].copy()), "corpus": corpus}


class PatchLoader:
    """Batches of one or more corpora for one epoch at a time, as dicts of tensors (``vis``,
    ``ir``, ``source``, ``origin``, ``corpus``; see the module docstring), deterministic from
    (``seed``, epoch). ``weights`` sample each corpus that many times per epoch (fractions take a
    random share of its chunks); ``rank``/``world`` default to the torch.distributed process
    group when one is initialised; ``workers`` loader processes share the reading. Call
    :meth:`set_epoch` before each epoch; ``len()`` is the number of batches this rank gets."""

    def __init__(self, stores: Sequence[str], *, batch_size: int, seed: int = 0, weights: Sequence[float] | None = None,
                 visible: str = "rgb", rank: int | None = None, world: int | None = None, workers: int = 0,
                 buffer_chunks: int = 4, in_memory: bool | None = None, pin_memory: bool = False) -> None:
        _check_visible(visible)
        if rank is None or world is None:
            initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
            rank = torch.distributed.get_rank() if initialised else 0
            world = torch.distributed.get_world_size() if initialised else 1
        self.corpora = Corpora(stores, weights, in_memory=in_memory)
        self.visible = visible
        self.batches = PatchBatches(self.corpora, batch_size=batch_size, seed=seed, rank=rank, world=world,
                                    buffer_chunks=buffer_chunks, fields=_NAMES)
        self._loader = torch.utils.data.DataLoader(self.batches, batch_size=None, num_workers=workers,
                                                   pin_memory=pin_memory)

    @property
    def records(self) -> list[CorpusRecord]:
        """How each corpus was made, in the order of ``stores``."""
        return self.corpora.records

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for columns in self._loader:
            batch = dict(zip(_NAMES, columns))
            batch["vis"], batch["ir"] = _pixels(batch["vis"], batch["ir"], self.visible)
            yield batch
