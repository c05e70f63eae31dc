"""The training losses, as the paper's release computes them (CDDFuse's, plus CrossFuse's
weak/aggressive self-supervision). Images are (B, 1, H, W) float in [0, 1]; features (B, C, H, W).
Fixed kernels are buffers of small modules or built on the input's device and dtype."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from crossfuse.fusion.config import AGGRESSIVE_VIEWS

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def gaussian_kernel1d(size: int, sigma: float | torch.Tensor, *, like: torch.Tensor) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd ``size``: ``exp(-x^2 / (2 sigma^2))`` at x = -(size-1)/2 .. (size-1)/2."""
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * torch.as_tensor(sigma, dtype=like.dtype, device=like.device) ** 2))
    return g / g.sum()


def separable_filter(x: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor, *, mode: str = "reflect") -> torch.Tensor:
    """Filter each channel of (B, C, H, W) by ``ky`` (vertical) then ``kx`` (horizontal), same size,
    padded with ``mode`` (torch's reflect: the edge pixel is not repeated)."""
    b, c, h, w = x.shape
    px, py = len(kx) // 2, len(ky) // 2
    x = F.pad(x.reshape(b * c, 1, h, w), (px, px, py, py), mode=mode)
    x = F.conv2d(x, ky.reshape(1, 1, -1, 1))
    x = F.conv2d(x, kx.reshape(1, 1, 1, -1))
    return x.reshape(b, c, h, w)


def ssim_map(x: torch.Tensor, y: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM map (kornia's): Gaussian window ``window`` x ``window`` (``sigma``) applied separably with
    reflect borders, C1 = 0.01^2, C2 = 0.03^2 (data range 1):
    ``((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2) + 1e-12)``."""
    k = gaussian_kernel1d(window, sigma, like=x)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return separable_filter(t, k, k)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x ** 2
    syy = filt(y * y) - mu_y ** 2
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2)
    return num / (den + 1e-12)


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean(clamp((1 - SSIM map) / 2, 0, 1))`` (kornia's SSIMLoss(11))."""
    return torch.clamp((1.0 - ssim_map(x, y)) / 2.0, 0.0, 1.0).mean()


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation over the pixels of each sample's channel, clamped to [-1, 1], averaged
    over batch and channels: ``sum(a' b') / (eps + |a'| |b'|)``, a' = a - mean, eps = float32 eps.

    The norms are ``vector_norm``s, not ``sqrt(sum(a'^2))`` as in the release: at a constant channel
    (a' = 0, common on black infrared regions) the sqrt's derivative is infinite and times the
    zero of ``2a'`` gives NaN, whereas ``vector_norm`` takes the subgradient 0 there. Same values."""
    n, c = a.shape[:2]
    a = a.reshape(n, c, -1)
    b = b.reshape(n, c, -1)
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    eps = torch.finfo(torch.float32).eps
    norms = torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1)
    cc = (a * b).sum(-1) / (eps + norms)
    return cc.clamp(-1.0, 1.0).mean()


def decomposition_loss(*, base_v: torch.Tensor, base_i: torch.Tensor, detail_v: torch.Tensor,
                       detail_i: torch.Tensor) -> torch.Tensor:
    """``cc(D_V, D_I)^2 / (1.01 + cc(B_V, B_I))``: detail features uncorrelated, base ones correlated."""
    return correlation(detail_v, detail_i) ** 2 / (1.01 + correlation(base_v, base_i))


def _kernel(rows: tuple, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)[None, None]


def spatial_gradient(x: torch.Tensor) -> torch.Tensor:
    """kornia's SpatialGradient: Sobel x and y responses with the kernel divided by 8, replicate
    borders (cross-correlation). (B, C, H, W) -> (B, C, 2, H, W)."""
    b, c, h, w = x.shape
    flat = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    kx = _kernel(SOBEL_X, x) / 8.0
    ky = kx.transpose(-1, -2)  # kornia's y kernel is the transpose of its x kernel
    return torch.cat([F.conv2d(flat, kx), F.conv2d(flat, ky)], dim=1).reshape(b, c, 2, h, w)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``S(x) = |x * Kx| + |x * Ky|``: unnormalised Sobel (Kx = [[-1,0,1],[-2,0,2],[-1,0,1]],
    Ky = [[1,2,1],[0,0,0],[-1,-2,-1]]), zero padding 1, per channel. (B, C, H, W) -> same."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, 1, h, w)
    gx = F.conv2d(flat, _kernel(SOBEL_X, x), padding=1)
    gy = F.conv2d(flat, _kernel(SOBEL_Y, x), padding=1)
    return (gx.abs() + gy.abs()).reshape(b, c, h, w)


def reconstruction_loss(*, vis: torch.Tensor, vis_hat: torch.Tensor, ir: torch.Tensor, ir_hat: torch.Tensor,
                        features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Phase I: ``sum_{x in V, I} [5 SSIMLoss(x, x_hat) + MSE(x, x_hat)] + 2 * decomposition
    + 5 * L1(grad(V), grad(V_hat))``. Returns the total under "loss" and each term."""
    rec_v = 5 * ssim_loss(vis, vis_hat) + F.mse_loss(vis, vis_hat)
    rec_i = 5 * ssim_loss(ir, ir_hat) + F.mse_loss(ir, ir_hat)
    decomp = decomposition_loss(base_v=features["base_v"], base_i=features["base_i"], detail_v=features["detail_v"],
                                detail_i=features["detail_i"])
    grad = F.l1_loss(spatial_gradient(vis), spatial_gradient(vis_hat))
    loss = rec_v + rec_i + 2 * decomp + 5 * grad
    return {"loss": loss, "rec_v": rec_v, "rec_i": rec_i, "decomp": decomp, "grad": grad}


def intensity_gradient_loss(*, vis: torch.Tensor, ir: torch.Tensor,
                            fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``L1(max(V, I), F)`` and ``L1(max(S(V), S(I)), S(F))`` (CDDFuse's Fusionloss terms)."""
    intensity = F.l1_loss(torch.maximum(vis, ir), fused)
    gradient = F.l1_loss(torch.maximum(sobel_magnitude(vis), sobel_magnitude(ir)), sobel_magnitude(fused))
    return intensity, gradient


def random_crop(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """The weak view: one random ``size`` x ``size`` window (same place for the whole batch)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"crop {size} is larger than the {h}x{w} patches")
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return x[..., top:top + size, left:left + size]


def gaussian_blur(x: torch.Tensor, *, width: int, height: int, sigma: float) -> torch.Tensor:
    """The aggressive view: Gaussian blur with a ``width`` x ``height`` kernel of standard deviation
    ``sigma`` in both directions, reflect borders (torchvision's GaussianBlur)."""
    return separable_filter(x, gaussian_kernel1d(width, sigma, like=x), gaussian_kernel1d(height, sigma, like=x))


def beta_schedule(t: float, total: float, beta_max: float = 0.1) -> float:
    """Cosine decay ``beta_max * (1 + cos(pi * t / T)) / 2`` with t counted from the start of phase II.
    (The release counts t from epoch 0, so its beta rises again near the end; we do not.)"""
    if total <= 0:
        return 0.0
    return beta_max * (1.0 + math.cos(math.pi * min(max(t / total, 0.0), 1.0))) / 2.0


#: The aggressive views the consistency term can compare the weak view with (``TrainConfig.aggressive``).


def jpeg_view(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Each image of (B, 1, H, W) in [0, 1] re-encoded as a gray JPEG of ``quality`` by Pillow and
    decoded (not differentiable: the result carries no gradient)."""
    out = []
    for img in (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()[:, 0]:
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L")))
    return torch.from_numpy(np.stack(out)[:, None]).to(x.device, x.dtype) / 255.0


def aggressive_view(weak: torch.Tensor, kind: str, *, generator: torch.Generator, blur: tuple[int, int] = (9, 21),
                    sigma_range: tuple[float, float] = (0.1, 5.0)) -> torch.Tensor:
    """The aggressive view of the weak crop, one random strength per batch:
    ``blur`` (the paper's): Gaussian blur ``blur`` = (width, height), sigma ~ U(``sigma_range``);
    ``jpeg``: JPEG re-encoding at quality ~ U{10..50}, a fixed target (no gradient through it);
    ``noise``: additive Gaussian noise of sd ~ U(0.01, 0.1) (its MSE to the weak view does not
    depend on the weights, so the term has no gradient: a control that trains as consistency off);
    ``cutout``: one random square of half the crop's side set to 0."""
    u = float(torch.rand((), generator=generator))
    if kind == "blur":
        lo, hi = sigma_range
        return gaussian_blur(weak, width=blur[0], height=blur[1], sigma=lo + (hi - lo) * u)
    if kind == "jpeg":
        return jpeg_view(weak, 10 + int(u * 41))  # u < 1, so quality 10..50
    if kind == "noise":
        sd = 0.01 + 0.09 * u
        noise = torch.randn(weak.shape, generator=generator, dtype=torch.float32).to(weak.device, weak.dtype)
        return weak + sd * noise
    if kind == "cutout":
        h, w = weak.shape[-2:]
        side_h, side_w = max(1, h // 2), max(1, w // 2)
        top = int(torch.randint(0, h - side_h + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - side_w + 1, (1,), generator=generator))
        mask = torch.ones_like(weak)
        mask[..., top:top + side_h, left:left + side_w] = 0
        return weak * mask
    raise ValueError(f"unknown aggressive view {kind!r}; choose one of {', '.join(AGGRESSIVE_VIEWS)}")


def fusion_loss(*, vis: torch.Tensor, ir: torch.Tensor, fused: torch.Tensor, features: dict[str, torch.Tensor],
                beta: float, generator: torch.Generator, crop: int = 32, blur: tuple[int, int] = (9, 21),
                sigma_range: tuple[float, float] = (0.1, 5.0), consistency: bool = True,
                aggressive: str = "blur") -> dict[str, torch.Tensor]:
    """Phase II: ``L1(max(V, I), F) + 10 L1(max(S(V), S(I)), S(F)) + 2 * decomposition
    + beta * MSE(weak(F), aggressive(weak(F)))``, weak = random ``crop`` crop, aggressive = by
    default Gaussian blur ``blur`` = (width, height) with sigma ~ U(``sigma_range``) (see
    :func:`aggressive_view` for the others). ``consistency=False`` drops the last term (the
    ablation without weak/aggressive self-supervision)."""
    intensity, gradient = intensity_gradient_loss(vis=vis, ir=ir, fused=fused)
    decomp = decomposition_loss(base_v=features["base_v"], base_i=features["base_i"], detail_v=features["detail_v"],
                                detail_i=features["detail_i"])
    loss = intensity + 10 * gradient + 2 * decomp
    terms = {"intensity": intensity, "gradient": gradient, "decomp": decomp}
    if consistency:
        weak = random_crop(fused, crop, generator)
        view = aggressive_view(weak, aggressive, generator=generator, blur=blur, sigma_range=sigma_range)
        terms["consistency"] = F.mse_loss(weak, view)
        loss = loss + beta * terms["consistency"]
    return {"loss": loss, **terms}
