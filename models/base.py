"""The interface every fusion model implements, and the test pipeline most of them share.

A :class:`Model` is stateless: it builds its network from its settings, names the sub-networks
the trainer optimises (one Adam parameter group, one gradient-clipping norm and one DDP wrapper
each), says which phase an epoch belongs to, computes a training step's loss terms, and fuses one
pair as its official test script does. The trainer (:mod:`crossfuse.fusion.trainer`), ``fuse``
(:mod:`crossfuse.fusion.inference`) and the experiment runner call nothing else.

Images enter every model as the corpus loader gives them (:func:`crossfuse.corpus.to_model_inputs`):
visible Y and infrared, (B, 1, P, P) float32 in [0, 1]; a model that works in another range (0-255,
[-1, 1]) converts inside its step and its fusion, as its official code does at reading time.

The shared test pipeline (:meth:`Model.fuse_image`): the visible image's Y, Cr and Cb by OpenCV's
8-bit ``BGR2YCrCb`` arithmetic (:mod:`crossfuse.ycrcb`), the network's output on Y (in tiles when
asked), the model's own conversion of that output to uint8 (:meth:`Model.to_uint8`), colour back
through OpenCV's ``YCrCb2RGB``. A model whose test script does otherwise overrides it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from crossfuse import ycrcb
from crossfuse.errors import CheckpointError, ParameterError
from crossfuse.models import settings as model_settings


@dataclass(frozen=True, kw_only=True)
class FuseOptions:
    """``tile``: tile size in pixels (0: whole image); ``overlap``: pixels shared by neighbouring
    tiles; ``bf16``: bfloat16 autocast; ``gray``: write the fused Y alone; ``round``: round the
    normalised output to uint8 instead of truncating it as the release does; ``channels_last``:
    run the convolutions in NHWC layout (1.3-1.5x faster on the CPU here, same numbers to 1e-5)."""

    tile: int = 0
    overlap: int = 32
    bf16: bool = False
    gray: bool = False
    round: bool = False
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.tile < 0 or self.overlap < 0:
            raise ParameterError(f"tile ({self.tile}) and overlap ({self.overlap}) must be >= 0.")
        if self.tile and self.tile <= 2 * self.overlap:
            raise ParameterError(f"--tile {self.tile} must exceed twice --overlap ({self.overlap}).")


def tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(read_start, read_stop, keep_start, keep_stop) along one axis; kept parts tile [0, length)."""
    if tile <= 0 or tile >= length:
        return [(0, length, 0, length)]
    step = tile - 2 * overlap
    if step <= 0:
        raise ValueError(f"tile {tile} must exceed twice the overlap {overlap}")
    out = []
    for keep in range(0, length, step):
        keep_stop = min(length, keep + step)
        start = max(0, min(keep - overlap, length - tile))
        out.append((start, min(length, start + tile), keep, keep_stop))
    return out


def min_max_uint8(fused: np.ndarray, *, round: bool = False) -> np.ndarray:
    """(H, W) float -> uint8 as most release test scripts save it: ``(f - min) / (max - min)``
    then ``* 255`` in float32, cast by truncation (``round``: rounded to nearest instead).
    A constant image (max = min, where the scripts divide by zero) becomes 0."""
    fused = np.asarray(fused, dtype=np.float32)
    lo, hi = fused.min(), fused.max()
    if not hi > lo:
        return np.zeros(fused.shape, dtype=np.uint8)
    scaled = (fused - lo) / (hi - lo) * np.float32(255.0)
    if round:
        scaled = np.rint(scaled)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def is_gray(rgb: np.ndarray) -> bool:
    """Whether an (H, W, 3) image has R = G = B everywhere (a gray visible image)."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def first_mismatch(net: nn.Module, state: dict[str, Any]) -> str:
    """The first key of ``net``'s state dict that ``state`` lacks or holds in another shape, or the
    first key ``state`` has that ``net`` lacks, as one phrase ("" when they fit)."""
    own = net.state_dict()
    for key, value in own.items():
        if key not in state:
            return f"{key} is missing"
        theirs = state[key]
        shape = tuple(theirs.shape) if hasattr(theirs, "shape") else None
        if shape != tuple(value.shape):
            return f"{key} has shape {shape}, the model {tuple(value.shape)}"
    extra = [k for k in state if k not in own]
    return f"{extra[0]} is not a weight of the model" if extra else ""


class Model:
    """One fusion model. Subclasses set :attr:`name`, :attr:`source` (the official repository and
    commit followed) and implement :meth:`build`, :meth:`step_losses`, :meth:`forward_fused` and
    :meth:`to_uint8`; the rest has defaults that fit single-phase, single-network models."""

    name: str = ""
    #: The official code followed: repository and commit.
    source: str = ""
    #: Training phases (CrossFuse: 2, reconstruction then fusion).
    phases: int = 1
    #: The smallest image side the network fuses.
    min_side: int = 3

    # --- building -------------------------------------------------------------------------
    def settings(self, **values: Any) -> Any:
        """This model's settings (its ``[network]`` table), ``values`` over the defaults."""
        return model_settings.settings_class(self.name)(**values)

    def build(self, settings: Any) -> nn.Module:
        raise NotImplementedError

    def parts(self, net: nn.Module) -> dict[str, nn.Module]:
        """The sub-networks the trainer optimises, clips and wraps for DDP, by name."""
        return {"net": net}

    # --- training -------------------------------------------------------------------------
    def phase(self, epoch: int, cfg: Any) -> tuple[int, float]:
        """The phase of ``epoch`` (0-based) and its consistency weight beta."""
        return 1, 0.0

    def step_losses(self, parts: dict[str, nn.Module], *, vis: torch.Tensor, ir: torch.Tensor, phase: int,
                    beta: float, cfg: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The loss terms of one batch of visible Y and infrared, (B, 1, P, P) in [0, 1]; the total
        under "loss". ``parts`` are :meth:`parts` of the network (DDP-wrapped when distributed)."""
        raise NotImplementedError

    @torch.no_grad()
    def preview(self, net: nn.Module, *, vis: torch.Tensor, ir: torch.Tensor, phase: int
                ) -> tuple[list[torch.Tensor], list[str]]:
        """Outputs to draw beside fixed visible and infrared patches in the trainer's sample
        sheets, each (n, 1, P, P) in [0, 1], and the titles of all columns."""
        raw = self.forward_fused(net, vis_y=vis, ir=ir)
        lo = raw.amin(dim=(1, 2, 3), keepdim=True)
        hi = raw.amax(dim=(1, 2, 3), keepdim=True)
        return [(raw - lo) / (hi - lo).clamp_min(1e-12)], ["visible Y", "infrared", "fused"]

    # --- fusing ---------------------------------------------------------------------------
    def forward_fused(self, net: nn.Module, *, vis_y: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The network's fused output for visible Y and infrared (B, 1, H, W) in [0, 1], in the
        model's own range (what its test script converts to an image)."""
        raise NotImplementedError

    def to_uint8(self, raw: np.ndarray, *, round: bool = False) -> np.ndarray:
        """(H, W) float32 output of :meth:`forward_fused` -> uint8, as the test script saves it."""
        raise NotImplementedError

    @torch.no_grad()
    def fuse_y(self, net: nn.Module, *, vis_y: np.ndarray, ir: np.ndarray, device: torch.device,
               options: FuseOptions = FuseOptions()) -> np.ndarray:
        """:meth:`forward_fused` of visible Y and infrared, (H, W) float32 in [0, 1], as (H, W)
        float32, in tiles when ``options.tile`` (each kept part from a tile that holds it with
        ``overlap`` pixels around it)."""
        h, w = ir.shape
        out = np.empty((h, w), dtype=np.float32)
        layout = torch.channels_last if options.channels_last else torch.contiguous_format
        net = net.to(memory_format=layout)  # in place; converting an already converted model is free
        for ys, ye, ks, ke in tiles(h, options.tile, options.overlap):
            for xs, xe, ls, le in tiles(w, options.tile, options.overlap):
                v = torch.from_numpy(np.ascontiguousarray(vis_y[ys:ye, xs:xe], dtype=np.float32))[None, None].to(device)
                i = torch.from_numpy(np.ascontiguousarray(ir[ys:ye, xs:xe], dtype=np.float32))[None, None].to(device)
                v, i = (t.contiguous(memory_format=layout) for t in (v, i))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bf16):
                    f = self.forward_fused(net, vis_y=v, ir=i).float()[0, 0].cpu().numpy()
                out[ks:ke, ls:le] = f[ks - ys:ke - ys, ls - xs:le - xs]
        return out

    def fuse_image(self, net: nn.Module, *, vis_rgb: np.ndarray, ir: np.ndarray, device: torch.device,
                   options: FuseOptions = FuseOptions()) -> Image.Image:
        """Fuse a visible (H, W, 3) uint8 RGB image with an infrared (H, W) uint8 one; returns the
        colour result (gray when ``options.gray`` or the visible image is gray)."""
        ycc = ycrcb.rgb_to_ycrcb(vis_rgb)  # a gray image gives Y = R = G = B and Cr = Cb = 128
        raw = self.fuse_y(net, vis_y=ycc[..., 0].astype(np.float32) / 255.0, ir=ir.astype(np.float32) / 255.0,
                          device=device, options=options)
        fused = self.to_uint8(raw, round=options.round)
        if options.gray or is_gray(vis_rgb):
            return Image.fromarray(fused, "L")
        return Image.fromarray(ycrcb.ycrcb_to_rgb(np.dstack([fused, ycc[..., 1], ycc[..., 2]])), "RGB")

    # --- checkpoints ----------------------------------------------------------------------
    def official_state(self, net: nn.Module) -> dict[str, Any]:
        """The weights in the official code's layout (what its scripts save and load)."""
        return net.state_dict()

    def load_official(self, net: nn.Module, state: dict[str, Any], *, where: str) -> None:
        """Load weights in the official layout; a :class:`CheckpointError` naming ``where`` and
        the first key that does not fit."""
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{where} is not a {self.name} state_dict (a dict of weight tensors).")
        problem = first_mismatch(net, state)
        if problem:
            raise CheckpointError(f"{where} does not fit {self.name}'s network: {problem}.")
        net.load_state_dict(state)

    def describe(self, settings: Any) -> dict[str, Any]:
        return {"model": self.name, **dataclasses.asdict(settings)}
