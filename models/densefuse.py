"""DenseFuse (Li and Wu, IEEE TIP 2019): an encoder-decoder trained as an autoencoder on single
images, whose two encodings are fused at test time.

Follows hli1221/densefuse-pytorch at commit 4394b63 (``net.py``, ``train_densefuse.py``,
``args_fusion.py``, ``test_image.py``, ``pytorch_msssim``) for the network, its training and its
``addition`` strategy, and hli1221/imagefusion_densefuse at 81c4f1e (``fusion_l1norm.py``) for
``l1-norm``. Images are on the 0-255 scale there, so this module multiplies its [0, 1] inputs by
255. Training: every visible Y patch and every infrared patch of a batch is one image to
reconstruct (2B images a step), with the loss of ``train_densefuse.py``::

    loss = mse(out, x) + ssim_weight * (1 - msssim(out, x, normalize=True))       (ssim_weight 100)

Where the code differs from the paper, the code is followed:

- The SSIM term is ``pytorch_msssim.msssim`` (five-scale MS-SSIM, normalised to (x + 1) / 2 at each
  scale, and combined as ``prod(mcs[:-1] ** w[:-1] * mssim[-1] ** w[-1])``, its formula), not the
  single-scale SSIM of the paper. Its data range is 255 when the output's maximum exceeds 128,
  else 1, as there.
- ``addition`` in the PyTorch release is the mean ``(e1 + e2) / 2`` (``net.py``'s ``fusion``), not
  the paper's sum.
- ``l1-norm`` is the TensorFlow release's: per pixel, ``w_k = ||e_k||_1 / (||e_1||_1 + ||e_2||_1)``
  (L1 over the channels and the batch), with no 3x3 averaging of the activity maps (commented out
  there). Where both encodings are zero it divides 0 by 0, as there.
- The output is clamped to [0, 255] and cast to uint8 by truncation (``test_image.py``); there is
  no min-max normalisation.

The official training reads gray images through Pillow's ``L`` (rounded integers); the corpus' Y
is not rounded. Colour results use the shared OpenCV YCrCb pipeline (the PyTorch release fuses
gray images, or RGB with a separately trained model).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.models.base import Model

_MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


class ConvLayer(nn.Module):
    """Reflection padding, convolution (bias), ReLU unless ``is_last``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 is_last: bool = False) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)
        self.is_last = is_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(self.reflection_pad(x))
        return out if self.is_last else F.relu(out)


class DenseConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.dense_conv = ConvLayer(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.dense_conv(x)], 1)


class DenseBlock(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        grow = 16
        self.denseblock = nn.Sequential(DenseConv2d(in_channels, grow), DenseConv2d(in_channels + grow, grow),
                                        DenseConv2d(in_channels + 2 * grow, grow))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.denseblock(x)


class DenseFuseNet(nn.Module):
    """Encoder ``conv1`` + dense block (1 -> 64 channels), decoder ``conv2..conv5`` (64 -> 1);
    images (B, 1, H, W) on the 0-255 scale. Module names are the release's (``DenseFuse_net``).
    As there, ``conv5`` is followed by a ReLU too (its ``is_last`` is never set)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvLayer(1, 16)
        self.DB1 = DenseBlock(16)
        self.conv2 = ConvLayer(64, 64)
        self.conv3 = ConvLayer(64, 32)
        self.conv4 = ConvLayer(32, 16)
        self.conv5 = ConvLayer(16, 1)

    def encoder(self, x: torch.Tensor) -> torch.Tensor:
        return self.DB1(self.conv1(x))

    def decoder(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.conv4(self.conv3(self.conv2(features))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct (B, 1, H, W) images: decoder(encoder(x)) (what training optimises)."""
        return self.decoder(self.encoder(x))


def fuse_features(a: torch.Tensor, b: torch.Tensor, strategy: str) -> torch.Tensor:
    """The two encodings (B, 64, H, W) fused: ``addition`` (their mean) or ``l1-norm``."""
    if strategy == "addition":
        return (a + b) / 2
    l1_a = a.abs().sum(dim=1).sum(dim=0)  # (H, W): over channels, then the batch, as fusion_l1norm.py
    l1_b = b.abs().sum(dim=1).sum(dim=0)
    total = l1_a + l1_b
    return (l1_a / total) * a + (l1_b / total) * b


def _gaussian_window(size: int, *, like: torch.Tensor) -> torch.Tensor:
    g = torch.tensor([math.exp(-(x - size // 2) ** 2 / float(2 * 1.5 ** 2)) for x in range(size)])
    g = (g / g.sum()).unsqueeze(1)
    return (g @ g.t()).float().to(device=like.device, dtype=like.dtype)[None, None]


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``pytorch_msssim.ssim(..., full=True)``: SSIM and contrast-sensitivity means over a valid
    (unpadded) Gaussian window of side ``min(11, H, W)``, sigma 1.5; one channel."""
    window = _gaussian_window(min(11, x.shape[2], x.shape[3]), like=x)
    mu1, mu2 = F.conv2d(x, window), F.conv2d(y, window)
    mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
    s1 = F.conv2d(x * x, window) - mu1_sq
    s2 = F.conv2d(y * y, window) - mu2_sq
    s12 = F.conv2d(x * y, window) - mu1_mu2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    v1, v2 = 2.0 * s12 + c2, s1 + s2 + c2
    return (((2 * mu1_mu2 + c1) * v1) / ((mu1_sq + mu2_sq + c1) * v2)).mean(), torch.mean(v1 / v2)


def msssim(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``pytorch_msssim.msssim(out, x, normalize=True)`` of (B, 1, H, W): five scales (2x2 average
    pooling between them), each SSIM and CS mapped to (v + 1) / 2, combined as
    ``prod(cs[:-1] ** w[:-1] * ssim[-1] ** w[-1])`` with w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333).
    The data range is 255 when ``max(out) > 128``, else 1 (and the minimum -1 below -0.5)."""
    hi = 255.0 if float(out.detach().max()) > 128 else 1.0
    lo = -1.0 if float(out.detach().min()) < -0.5 else 0.0
    weights = torch.tensor(_MSSSIM_WEIGHTS, device=out.device, dtype=out.dtype)
    sims, css = [], []
    for _ in weights:
        sim, cs = _ssim_and_cs(out, x, hi - lo)
        sims.append(sim)
        css.append(cs)
        out, x = F.avg_pool2d(out, (2, 2)), F.avg_pool2d(x, (2, 2))
    sims_t, css_t = (torch.stack(sims) + 1) / 2, (torch.stack(css) + 1) / 2
    return torch.prod(css_t[:-1] ** weights[:-1] * sims_t[-1] ** weights[-1])


def autoencoder_loss(*, images: torch.Tensor, out: torch.Tensor, ssim_weight: float) -> dict[str, torch.Tensor]:
    """``train_densefuse.py``'s loss of reconstructions ``out`` of ``images`` (0-255 scale)."""
    pixel = F.mse_loss(out, images)
    ssim = 1 - msssim(out, images)
    return {"loss": pixel + ssim_weight * ssim, "pixel": pixel, "ssim": ssim}


class DenseFuseModel(Model):
    name = "densefuse"
    source = "hli1221/densefuse-pytorch 4394b63; l1-norm: hli1221/imagefusion_densefuse 81c4f1e"

    def build(self, settings: Any) -> nn.Module:
        net = DenseFuseNet()
        net.strategy = settings.strategy  # the test-time fusion, a plain attribute (not a weight)
        return net

    def step_losses(self, parts, *, vis, ir, phase, beta, cfg, generator):
        images = torch.cat([vis, ir]) * 255.0
        out = parts["net"](images)
        # the loss in float32 even under bf16 autocast: SSIM's variances (E[x^2] - E[x]^2 on the 0-255
        # scale) cancel catastrophically in bf16 and made every step's loss NaN on CUDA
        with torch.autocast(out.device.type, enabled=False):
            return autoencoder_loss(images=images.float(), out=out.float(), ssim_weight=cfg.network.ssim_weight)

    def forward_fused(self, net, *, vis_y, ir):
        # test_image.py's order: encoder(ir), encoder(vis), fusion, decoder
        return net.decoder(fuse_features(net.encoder(ir * 255.0), net.encoder(vis_y * 255.0), net.strategy))

    @torch.no_grad()
    def preview(self, net, *, vis, ir, phase):
        both = net(torch.cat([vis, ir]) * 255.0).clamp(0, 255) / 255.0
        fused = self.forward_fused(net, vis_y=vis, ir=ir).clamp(0, 255) / 255.0
        return [both[:len(vis)], both[len(vis):], fused], ["visible Y", "infrared", "rec. visible", "rec. infrared",
                                                           "fused"]

    def to_uint8(self, raw: np.ndarray, *, round: bool = False) -> np.ndarray:
        """``test_image.py``: clamp to [0, 255], cast by truncation (``round``: rounded)."""
        clamped = np.clip(raw, 0.0, 255.0)
        return (np.rint(clamped) if round else clamped).astype(np.uint8)


MODEL = DenseFuseModel()
