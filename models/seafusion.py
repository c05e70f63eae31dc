"""SeAFusion's fusion network (Tang et al., Information Fusion 2022), trained alone.

Follows Linfeng-Tang/SeAFusion at commit 5fd9c52 (``FusionNet.py``, ``loss.py``, ``test.py``;
``train.py`` at 31e6a50 for the optimiser). The author's fusion-only mode (that repository's
issue #45): ``train_fusion`` with no segmentation network, so the loss is ``loss.py``'s
``Fusionloss`` alone::

    loss = | max(Y, I) - F |_1 + grad_weight * | max(S(Y), S(I)) - S(F) |_1      (means; grad_weight 10)

with ``S(x) = |sobel_x * x| + |sobel_y * x|`` (3x3, zero padding). Where the code differs from
the paper, the code is followed:

- Each ``RGBD`` block's Sobel convolutions (``sobelconv.convx``/``convy``) are ordinary trainable
  weights initialised to the Sobel kernels, as in ``FusionNet.py`` (the paper calls them a fixed
  gradient operator).
- ``ConvBnLeakyRelu2d``/``ConvBnTanh2d`` build a batch norm that ``forward`` never calls; it is
  kept (its state is in the official ``state_dict``) and never used, so official weights load; its
  parameters are frozen (they never receive a gradient there either), which DDP needs.
- The output layer is ``tanh(x) / 2 + 0.5``.

The test pipeline (:meth:`SeAFusionModel.fuse_image`) is ``test.py``'s: RGB / 255 to Y, Cr, Cb by
its float constants, Y into the network, its YCrCb -> RGB matrix, clamped to [0, 1], min-max
normalised over the whole output, ``np.uint8(255 * x)`` (truncation). ``test.py`` normalises over a
batch of 32 images at once, so its output depends on which images share a batch; crossfuse fuses
one image at a time, which is what ``test.py -B 1`` writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from crossfuse.models.base import FuseOptions, Model, is_gray, min_max_uint8

_SOBEL = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))  # FusionNet.py's, its transpose for y


class ConvLeakyRelu2d(nn.Module):
    """3x3 convolution (padding 1, bias), leaky ReLU 0.2."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x), negative_slope=0.2)


class ConvBnLeakyRelu2d(ConvLeakyRelu2d):
    """The release's "ConvBn" block: a batch norm is built (and saved) but not applied."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.bn = nn.BatchNorm2d(out_channels)
        # Never applied, so never given a gradient (Adam leaves it as it is there too); frozen so that
        # DDP does not wait for gradients that never come.
        self.bn.requires_grad_(False)


class ConvBnTanh2d(ConvBnLeakyRelu2d):
    """Output layer: ``tanh(conv(x)) / 2 + 0.5`` in (0, 1); its batch norm is not applied either."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)) / 2 + 0.5


class Conv1(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Sobelxy(nn.Module):
    """``|convx(x)| + |convy(x)|``, depthwise 3x3 without bias, trainable, initialised to Sobel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convx = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.convy = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        kernel = torch.tensor(_SOBEL)
        with torch.no_grad():
            self.convx.weight.copy_(kernel.expand_as(self.convx.weight))
            self.convy.weight.copy_(kernel.T.expand_as(self.convy.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convx(x).abs() + self.convy(x).abs()


class DenseBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLeakyRelu2d(channels, channels)
        self.conv2 = ConvLeakyRelu2d(2 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat((x, self.conv1(x)), dim=1)
        return torch.cat((x, self.conv2(x)), dim=1)


class RGBD(nn.Module):
    """Residual gradient dense block: ``lrelu_0.1(conv1x1(dense(x)) + conv1x1(sobel(x)))``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.dense = DenseBlock(in_channels)
        self.convdown = Conv1(3 * in_channels, out_channels)
        self.sobelconv = Sobelxy(in_channels)
        self.convup = Conv1(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.convdown(self.dense(x)) + self.convup(self.sobelconv(x)), negative_slope=0.1)


class FusionNet(nn.Module):
    """Two encoders (16 -> 32 -> 48 channels), a four-layer decoder; (B, 1, H, W) visible Y and
    infrared in [0, 1] -> fused (B, 1, H, W) in (0, 1). Module names are the release's."""

    def __init__(self) -> None:
        super().__init__()
        vis_ch = inf_ch = (16, 32, 48)
        self.vis_conv = ConvLeakyRelu2d(1, vis_ch[0])
        self.vis_rgbd1 = RGBD(vis_ch[0], vis_ch[1])
        self.vis_rgbd2 = RGBD(vis_ch[1], vis_ch[2])
        self.inf_conv = ConvLeakyRelu2d(1, inf_ch[0])
        self.inf_rgbd1 = RGBD(inf_ch[0], inf_ch[1])
        self.inf_rgbd2 = RGBD(inf_ch[1], inf_ch[2])
        self.decode4 = ConvBnLeakyRelu2d(vis_ch[2] + inf_ch[2], vis_ch[1] + vis_ch[1])
        self.decode3 = ConvBnLeakyRelu2d(vis_ch[1] + inf_ch[1], vis_ch[0] + inf_ch[0])
        self.decode2 = ConvBnLeakyRelu2d(vis_ch[0] + inf_ch[0], vis_ch[0])
        self.decode1 = ConvBnTanh2d(vis_ch[0], 1)

    def forward(self, image_vis: torch.Tensor, image_ir: torch.Tensor) -> torch.Tensor:
        """(visible, infrared): the release's order; only the visible input's first channel (Y) is used."""
        v = self.vis_rgbd2(self.vis_rgbd1(self.vis_conv(image_vis[:, :1])))
        i = self.inf_rgbd2(self.inf_rgbd1(self.inf_conv(image_ir)))
        return self.decode1(self.decode2(self.decode3(self.decode4(torch.cat((v, i), dim=1)))))


class SobelMagnitude(nn.Module):
    """``loss.py``'s gradient operator: ``|sobel_x * x| + |sobel_y * x|``, fixed kernels (buffers),
    zero padding; (B, 1, H, W) -> same."""

    def __init__(self) -> None:
        super().__init__()
        kx = torch.tensor(((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0)))
        ky = torch.tensor(((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0)))
        self.register_buffer("kernels", torch.stack([kx, ky])[:, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.conv2d(x, self.kernels.to(x.dtype), padding=1)
        return g[:, :1].abs() + g[:, 1:].abs()


def fusion_loss(*, vis: torch.Tensor, ir: torch.Tensor, fused: torch.Tensor, grad_weight: float = 10.0,
                sobel: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """``loss.py``'s ``Fusionloss`` on (B, 1, H, W) visible Y, infrared and fused in [0, 1]:
    ``loss_in = mean |max(Y, I) - F|``, ``loss_grad = mean |max(S Y, S I) - S F|``,
    ``loss = loss_in + grad_weight * loss_grad``."""
    sobel = sobel if sobel is not None else SobelMagnitude().to(fused.device)
    loss_in = F.l1_loss(torch.max(vis, ir), fused)
    loss_grad = F.l1_loss(torch.max(sobel(vis), sobel(ir)), sobel(fused))
    return {"loss": loss_in + grad_weight * loss_grad, "intensity": loss_in, "gradient": loss_grad}


def rgb_to_ycrcb(rgb: torch.Tensor) -> torch.Tensor:
    """``test.py``'s RGB2YCrCb on (B, 3, H, W) float in [0, 1]: ``Y = 0.299 R + 0.587 G + 0.114 B``,
    ``Cr = 0.713 (R - Y) + 0.5``, ``Cb = 0.564 (B - Y) + 0.5``."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.cat((y, (r - y) * 0.713 + 0.5, (b - y) * 0.564 + 0.5), dim=1)


def ycrcb_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """``test.py``'s YCrCb2RGB: each pixel's ``(Y, Cr - 0.5, Cb - 0.5)`` times its matrix
    ``[[1, 1, 1], [1.403, -0.714, 0], [0, -0.344, 1.773]]``; (B, 3, H, W) -> same."""
    b, _, h, w = ycc.shape
    flat = ycc.permute(0, 2, 3, 1).reshape(-1, 3)
    mat = torch.tensor([[1.0, 1.0, 1.0], [1.403, -0.714, 0.0], [0.0, -0.344, 1.773]], device=ycc.device)
    bias = torch.tensor([0.0 / 255, -0.5, -0.5], device=ycc.device)
    return (flat + bias).mm(mat).reshape(b, h, w, 3).permute(0, 3, 1, 2)


def save_like_test_py(rgb: np.ndarray) -> np.ndarray:
    """``test.py``'s last steps on a clamped float32 image: min-max over every value, then
    ``np.uint8(255.0 * x)`` (truncation). A constant image (0/0 there) becomes 0."""
    rgb = np.asarray(rgb, dtype=np.float32)
    lo, hi = np.min(rgb), np.max(rgb)
    if not hi > lo:
        return np.zeros(rgb.shape, dtype=np.uint8)
    return np.uint8(255.0 * ((rgb - lo) / (hi - lo)))


class SeAFusionModel(Model):
    name = "seafusion"
    source = "Linfeng-Tang/SeAFusion 5fd9c52 (FusionNet.py, loss.py, test.py); train.py 31e6a50"

    def build(self, settings: Any) -> nn.Module:
        return FusionNet()

    def step_losses(self, parts, *, vis, ir, phase, beta, cfg, generator):
        fused = parts["net"](vis, ir)
        with torch.autocast(fused.device.type, enabled=False):  # the loss in float32 under bf16 autocast too
            return fusion_loss(vis=vis.float(), ir=ir.float(), fused=fused.float(), grad_weight=cfg.network.grad_weight)

    def forward_fused(self, net, *, vis_y, ir):
        return net(vis_y, ir)

    def to_uint8(self, raw: np.ndarray, *, round: bool = False) -> np.ndarray:
        """Gray output: clamped to [0, 1], min-max normalised, truncated (``round``: rounded)."""
        return min_max_uint8(np.clip(raw, 0.0, 1.0), round=round)

    def fuse_image(self, net: nn.Module, *, vis_rgb: np.ndarray, ir: np.ndarray, device: torch.device,
                   options: FuseOptions = FuseOptions()) -> Image.Image:
        ycc = rgb_to_ycrcb(torch.from_numpy(vis_rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None])
        raw = self.fuse_y(net, vis_y=ycc[0, 0].numpy(), ir=ir.astype(np.float32) / 255.0, device=device,
                          options=options)
        if options.gray or is_gray(vis_rgb):
            return Image.fromarray(self.to_uint8(raw, round=options.round), "L")
        rgb = ycrcb_to_rgb(torch.cat((torch.from_numpy(raw)[None, None], ycc[:, 1:]), dim=1)).clamp(0.0, 1.0)
        image = rgb[0].permute(1, 2, 0).numpy()
        if options.round:
            return Image.fromarray(min_max_uint8(image, round=True), "RGB")
        return Image.fromarray(save_like_test_py(image), "RGB")


MODEL = SeAFusionModel()
