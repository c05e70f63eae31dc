"""SDNet (Zhang and Ma, IJCV 2021): squeeze (fuse) and decompose (reconstruct both sources from
the fused image), a PyTorch port of the official TensorFlow 1 graph.

Follows HaoZhang1018/SDNet at commit bf6a2ee: ``IR_VIS/test.py`` for the network and its test
pipeline, ``IR_VIS/model.py`` and ``IR_VIS/train.py`` for the loss and the optimiser (that snapshot
holds an ``IR_VIS/train.py`` and ``model.py``; their loss weights are the ones used here)::

    int  = mean (F - I)^2 + vis_intensity_weight * mean (F - V)^2                     (0.5)
    grad = mean (s_I * (lap F - lap I)^2) + mean (s_V * (lap F - lap V)^2)
    sept = mean (D_I - I)^2 + mean (D_V - V)^2
    loss = int + grad_weight * grad + sept_weight * sept                             (80, 1)

``lap`` is the 4-neighbour Laplacian, ``s_V = sign(g_V - min(g_V, g_I))`` with ``g = |lap(lowpass(x))|``
(the 3x3 low pass of ``utils.py``), ``s_I = 1 - s_V``; every convolution pads with zeros as TF's
``SAME`` does. Images are on [-1, 1] (``(x - 127.5) / 127.5``). The graph's layers: per source a
5x5 then three 3x3 convolutions densely connected (16 channels each, leaky ReLU 0.2), a 1x1
squeeze of the eight feature maps to the fused image (tanh), a 1x1 expansion to 128 channels,
and per source three 3x3 convolutions (16, 4, 1; tanh last) decomposing it back.

Weights in the official layout are the TF variables by name (``fusion_model/layer1_ir/w1_ir``,
HWIO); :meth:`SDNetModel.official_state` and :meth:`~SDNetModel.load_official` convert. The test
pipeline: the fused output ``* 127.5 + 127.5`` saved by ``scipy.misc.imsave``, which min-max scales
a float image to 0-255 and rounds (``bytescale``). Colour results use the shared OpenCV YCrCb
pipeline; the repository's MATLAB colour scripts (``RGB2YCbCr.m``) compute in uint8 arithmetic
that saturates Cb and Cr at 0 for most colours, which is not followed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.errors import CheckpointError
from crossfuse.models.base import Model, first_mismatch

#: (layer, kernel, in, out) of each convolution, in the official graph's order.
LAYERS = (("layer1_ir", 5, 1, 16), ("layer1_vi", 5, 1, 16), ("layer2_ir", 3, 16, 16), ("layer2_vi", 3, 16, 16),
          ("layer3_ir", 3, 32, 16), ("layer3_vi", 3, 32, 16), ("layer4_ir", 3, 48, 16), ("layer4_vi", 3, 48, 16),
          ("layer5_fuse", 1, 128, 1), ("layer6_sept", 1, 1, 128), ("layer7_ir", 3, 128, 16),
          ("layer7_vi", 3, 128, 16), ("layer8_ir", 3, 16, 4), ("layer8_vi", 3, 16, 4), ("layer9_ir", 3, 4, 1),
          ("layer9_vi", 3, 4, 1))


def _tf_names(layer: str) -> tuple[str, str]:
    number, branch = layer.removeprefix("layer").split("_")
    return f"fusion_model/{layer}/w{number}_{branch}", f"fusion_model/{layer}/b{number}_{branch}"


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)  # tf.maximum(x, 0.2 x)


class SDNet(nn.Module):
    """(infrared, visible) (B, 1, H, W) on [-1, 1] -> (fused, decomposed infrared, decomposed
    visible), each (B, 1, H, W) in (-1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        for layer, k, cin, cout in LAYERS:
            self.add_module(layer, nn.Conv2d(cin, cout, k, padding=k // 2))

    def squeeze(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        feats = {}
        for branch, x in (("ir", ir), ("vi", vi)):
            c1 = _lrelu(getattr(self, f"layer1_{branch}")(x))
            c2 = _lrelu(getattr(self, f"layer2_{branch}")(c1))
            c3 = _lrelu(getattr(self, f"layer3_{branch}")(torch.cat([c1, c2], 1)))
            c4 = _lrelu(getattr(self, f"layer4_{branch}")(torch.cat([c1, c2, c3], 1)))
            feats[branch] = (c1, c2, c3, c4)
        mixed = torch.cat([t for pair in zip(feats["ir"], feats["vi"]) for t in pair], 1)
        return torch.tanh(self.layer5_fuse(mixed))

    def decompose(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sept = _lrelu(self.layer6_sept(fused))
        out = []
        for branch in ("ir", "vi"):
            x = _lrelu(getattr(self, f"layer7_{branch}")(sept))
            x = _lrelu(getattr(self, f"layer8_{branch}")(x))
            out.append(torch.tanh(getattr(self, f"layer9_{branch}")(x)))
        return out[0], out[1]

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fused = self.squeeze(ir, vi)
        sept_ir, sept_vi = self.decompose(fused)
        return fused, sept_ir, sept_vi


_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
_LOW_PASS = ((0.0947, 0.1183, 0.0947), (0.1183, 0.1478, 0.1183), (0.0947, 0.1183, 0.0947))


def _filter(x: torch.Tensor, kernel: tuple) -> torch.Tensor:
    return F.conv2d(x, torch.tensor(kernel, dtype=x.dtype, device=x.device)[None, None], padding=1)


def sdnet_loss(*, ir: torch.Tensor, vi: torch.Tensor, fused: torch.Tensor, sept_ir: torch.Tensor,
               sept_vi: torch.Tensor, vis_intensity_weight: float = 0.5, grad_weight: float = 80.0,
               sept_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """``IR_VIS/model.py``'s ``g_loss_total`` on (B, 1, H, W) tensors on [-1, 1] (see the module)."""
    g_vi = _filter(_filter(vi, _LOW_PASS), _LAPLACIAN).abs()
    g_ir = _filter(_filter(ir, _LOW_PASS), _LAPLACIAN).abs()
    score_vi = torch.sign(g_vi - torch.minimum(g_vi, g_ir))
    score_ir = 1 - score_vi
    lap_f = _filter(fused, _LAPLACIAN)
    intensity = torch.mean((fused - ir) ** 2) + vis_intensity_weight * torch.mean((fused - vi) ** 2)
    grad = (torch.mean(score_ir * (lap_f - _filter(ir, _LAPLACIAN)) ** 2)
            + torch.mean(score_vi * (lap_f - _filter(vi, _LAPLACIAN)) ** 2))
    sept = torch.mean((sept_ir - ir) ** 2) + torch.mean((sept_vi - vi) ** 2)
    return {"loss": intensity + grad_weight * grad + sept_weight * sept, "intensity": intensity, "gradient": grad,
            "decomposition": sept}


def _signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> the official [-1, 1]: ``(255 x - 127.5) / 127.5``."""
    return (x * 255.0 - 127.5) / 127.5


def bytescale(image: np.ndarray) -> np.ndarray:
    """``scipy.misc.imsave``'s conversion of a float image (``bytescale``, scipy <= 1.1):
    ``(x - min) * 255 / (max - min)``, clipped to [0, 255], ``+ 0.5`` and truncated (rounded);
    a constant image keeps scale 1."""
    data = np.asarray(image, dtype=np.float64)
    cmin, cmax = data.min(), data.max()
    scale = 255.0 / ((cmax - cmin) or 1.0)
    return ((data - cmin) * scale).clip(0, 255).__add__(0.5).astype(np.uint8)


class SDNetModel(Model):
    name = "sdnet"
    source = "HaoZhang1018/SDNet bf6a2ee (IR_VIS/test.py; loss from IR_VIS/model.py, train.py)"

    def build(self, settings: Any) -> nn.Module:
        return SDNet()

    def step_losses(self, parts, *, vis, ir, phase, beta, cfg, generator):
        i, v = _signed(ir), _signed(vis)
        fused, sept_ir, sept_vi = parts["net"](i, v)
        n = cfg.network
        with torch.autocast(fused.device.type, enabled=False):  # the loss in float32 under bf16 autocast too
            return sdnet_loss(ir=i.float(), vi=v.float(), fused=fused.float(), sept_ir=sept_ir.float(),
                              sept_vi=sept_vi.float(), vis_intensity_weight=n.vis_intensity_weight,
                              grad_weight=n.grad_weight, sept_weight=n.sept_weight)

    def forward_fused(self, net, *, vis_y, ir):
        return net.squeeze(_signed(ir), _signed(vis_y))

    @torch.no_grad()
    def preview(self, net, *, vis, ir, phase):
        fused, sept_ir, sept_vi = net(_signed(ir), _signed(vis))
        return ([(t + 1) / 2 for t in (fused, sept_ir, sept_vi)],
                ["visible Y", "infrared", "fused", "decomposed infrared", "decomposed visible"])

    def to_uint8(self, raw: np.ndarray, *, round: bool = False) -> np.ndarray:
        """``test.py``: ``result * 127.5 + 127.5``, then ``imsave``'s min-max scaling with rounding
        (``round`` changes nothing: it already rounds)."""
        return bytescale(np.asarray(raw, dtype=np.float32) * 127.5 + 127.5)

    def official_state(self, net: nn.Module) -> dict[str, Any]:
        state = {}
        for layer, *_ in LAYERS:
            conv = getattr(net, layer)
            w, b = _tf_names(layer)
            state[w] = conv.weight.detach().permute(2, 3, 1, 0).contiguous()  # OIHW -> HWIO
            state[b] = conv.bias.detach().clone()
        return state

    def load_official(self, net: nn.Module, state: dict[str, Any], *, where: str) -> None:
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{where} is not an SDNet state (TF variable names -> weight tensors).")
        converted = {}
        for layer, *_ in LAYERS:
            w, b = _tf_names(layer)
            if w not in state or b not in state:
                raise CheckpointError(f"{where} does not fit sdnet's network: {w if w not in state else b} is missing.")
            weight = state[w]
            converted[f"{layer}.weight"] = weight.permute(3, 2, 0, 1) if weight.ndim == 4 else weight
            converted[f"{layer}.bias"] = state[b]
        extra = [k for k in state if k not in {n for layer, *_ in LAYERS for n in _tf_names(layer)}]
        problem = first_mismatch(net, converted) or (f"{extra[0]} is not a weight of the model" if extra else "")
        if problem:
            raise CheckpointError(f"{where} does not fit sdnet's network: {problem} (official layout: HWIO).")
        net.load_state_dict(converted)


MODEL = SDNetModel()
