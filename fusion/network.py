"""The CrossFuse network (the paper's release reuses CDDFuse, Zhao et al., CVPR 2023).

A shared Restormer encoder turns one gray image (B, 1, H, W) in [0, 1] into a base (long-range)
feature and a detail (short-range) feature, each (B, dim, H, W). Fusion layers combine the
infrared and visible features; a Restormer decoder maps base + detail back to an image, adding
the visible Y input as a residual before the final sigmoid. Module and parameter names follow
the official checkpoint (``../shared/reference/official_checkpoint_keys.tsv``), so its four state
dicts load directly. Device and dtype are the caller's choice; nothing here picks them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crossfuse.fusion.config import NetworkConfig  # noqa: F401 - defined there (torch-free), used here


class _Affine(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))


def _channels_innermost(x: torch.Tensor) -> bool:
    """Whether (B, C, H, W) ``x`` keeps its channels adjacent in memory (channels_last, or a
    channel slice of such a tensor)."""
    return x.shape[1] > 1 and x.stride(1) == 1


class LayerNorm(nn.Module):
    """Restormer's "WithBias" layer norm over the channels of (B, C, H, W), at every pixel:
    ``(x - mean_c) / sqrt(var_c + 1e-5) * weight + bias`` (population variance). On channels_last
    input it is one fused ``F.layer_norm`` over the innermost axis; otherwise it is computed on the
    channel axis directly instead of through the release's (B, HW, C) copies. Same formula both ways."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = _Affine(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _channels_innermost(x):
            nhwc = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.body.weight, self.body.bias, 1e-5)
            return nhwc.permute(0, 3, 1, 2)
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        return (x - mu) * torch.rsqrt(var + 1e-5) * self.body.weight[:, None, None] + self.body.bias[:, None, None]


def _channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: torch.Tensor) -> torch.Tensor:
    """Transposed (channel-wise) attention: per head, softmax(norm(q) norm(k)^T * scale) v over
    the C/heads channels, each a vector over all H*W pixels (norm: L2 over the pixels, at least
    1e-12, as ``F.normalize``). Inputs and output (B, C, H, W). Channels_last input takes
    :func:`_channel_attention_nhwc`, which never transposes the pixels."""
    if _channels_innermost(q):
        return _channel_attention_nhwc(q, k, v, heads, scale)
    b, c, h, w = q.shape
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1)) * scale
    return (attn.softmax(dim=-1) @ v).reshape(b, c, h, w)


def _channel_attention_nhwc(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                            scale: torch.Tensor) -> torch.Tensor:
    """:func:`_channel_attention` on channels-innermost tensors, as (B, HW, C) matrices: one GEMM
    gives every channel pair's dot product, whose diagonal head blocks divided by the two L2 norms
    are the normalised q k^T; a second GEMM with the block-diagonal matrix of the heads' attention
    applies it to v. Returns a channels_last tensor; equal to the NCHW path to float rounding."""
    b, c, h, w = q.shape
    d = c // heads
    xq, xk, xv = (t.permute(0, 2, 3, 1).reshape(b, h * w, c) for t in (q, k, v))
    # Clamp before the sqrt (same values as F.normalize's max(norm, 1e-12)): clamping after it lets a
    # zero channel (a constant patch) send sqrt's infinite derivative back as NaN. Measured as fast
    # as the plain form and 15% faster than vector_norm here.
    nq, nk = (x.square().sum(1).clamp_min(1e-24).sqrt() for x in (xq, xk))  # (B, C)
    dots = (xq.transpose(1, 2) @ xk).view(b, heads, d, heads, d).diagonal(dim1=1, dim2=3)  # (B, d, d, heads)
    attn = (dots.permute(0, 3, 1, 2) / (nq.view(b, heads, d, 1) * nk.view(b, heads, 1, d)) * scale).softmax(dim=-1)
    mix = attn.new_zeros(b, c, c)  # mix[h*d + i, h*d + j] = attn[h, j, i]
    mix.view(b, heads, d, heads, d).diagonal(dim1=1, dim2=3).copy_(attn.permute(0, 3, 2, 1))
    return (xv @ mix).view(b, h, w, c).permute(0, 3, 1, 2)


class Attention(nn.Module):
    """Restormer MDTA: 1x1 conv to q, k, v, depthwise 3x3, channel attention, 1x1 projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(_channel_attention(q, k, v, self.num_heads, self.temperature))


class FeedForward(nn.Module):
    """Gated-dconv FFN: 1x1 up to 2 * hidden, depthwise 3x3 (``groups`` = 2 * hidden in the
    transformer blocks, hidden in the base branch), GELU(x1) * x2, 1x1 down."""

    def __init__(self, dim: int, expansion: float, *, groups_per_half: bool = False) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden if groups_per_half else hidden * 2,
                                bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """x + Attention(LN(x)), then + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, expansion: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = LayerNorm(dim)
        self.ffn = FeedForward(dim, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class AttentionBase(nn.Module):
    """The base branch's attention: 1x1 conv then a full 3x3 conv to q, k, v; channel attention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.scale = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv1 = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv2 = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, bias=False)
        self.proj = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv2(self.qkv1(x)).chunk(3, dim=1)
        return self.proj(_channel_attention(q, k, v, self.num_heads, self.scale))


class BaseFeatureExtraction(nn.Module):
    """Long-range (base) feature: one attention block with FFN expansion 1. (B, dim, H, W) -> same."""

    def __init__(self, dim: int, heads: int, expansion: float = 1.0) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = AttentionBase(dim, heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = FeedForward(dim, expansion, groups_per_half=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class InvertedResidualBlock(nn.Module):
    """MobileNetV2 block without batch norm: 1x1 expand, ReLU6, reflection-padded depthwise 3x3,
    ReLU6, 1x1 project."""

    def __init__(self, channels: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = channels * expansion
        self.bottleneckBlock = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU6(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False),
            nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneckBlock(x)


class DetailNode(nn.Module):
    """One invertible node: mix (z1, z2) by a 1x1 conv, then z2 += phi(z1); z1 = z1 * exp(rho(z2)) + eta(z2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        self.theta_phi = InvertedResidualBlock(half)
        self.theta_rho = InvertedResidualBlock(half)
        self.theta_eta = InvertedResidualBlock(half)
        self.shffleconv = nn.Conv2d(dim, dim, 1, bias=True)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = self.shffleconv(torch.cat((z1, z2), dim=1)).chunk(2, dim=1)
        z2 = z2 + self.theta_phi(z1)
        z1 = z1 * torch.exp(self.theta_rho(z2)) + self.theta_eta(z2)
        return z1, z2


class DetailFeatureExtraction(nn.Module):
    """Short-range (detail) feature: ``nodes`` invertible nodes on the two channel halves."""

    def __init__(self, dim: int, nodes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(*[DetailNode(dim) for _ in range(nodes)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1, z2 = x.chunk(2, dim=1)
        for node in self.net:
            z1, z2 = node(z1, z2)
        return torch.cat((z1, z2), dim=1)


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Encoder(nn.Module):
    """(B, 1, H, W) in [0, 1] -> base, detail and shared features, each (B, dim, H, W)."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(cfg.dim)
        self.encoder_level1 = nn.Sequential(*[TransformerBlock(cfg.dim, cfg.heads, cfg.ffn_expansion)
                                              for _ in range(cfg.encoder_blocks)])
        self.baseFeature = BaseFeatureExtraction(cfg.dim, cfg.heads, cfg.base_ffn_expansion)
        self.detailFeature = DetailFeatureExtraction(cfg.dim, cfg.detail_nodes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shared = self.encoder_level1(self.patch_embed(x))
        return self.baseFeature(shared), self.detailFeature(shared), shared


class Decoder(nn.Module):
    """(base, detail) features and the residual image (B, 1, H, W) or None -> sigmoid image in
    (0, 1) (B, 1, H, W), and the reduced feature (B, dim, H, W)."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.reduce_channel = nn.Conv2d(cfg.dim * 2, cfg.dim, 1, bias=False)
        self.encoder_level2 = nn.Sequential(*[TransformerBlock(cfg.dim, cfg.heads, cfg.ffn_expansion)
                                              for _ in range(cfg.decoder_blocks)])
        self.output = nn.Sequential(
            nn.Conv2d(cfg.dim, cfg.dim // 2, 3, padding=1, bias=False),
            nn.LeakyReLU(),
            nn.Conv2d(cfg.dim // 2, 1, 3, padding=1, bias=False),
        )

    def forward(self, residual: torch.Tensor | None, base: torch.Tensor, detail: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        reduced = self.reduce_channel(torch.cat((base, detail), dim=1))
        out = self.output(self.encoder_level2(reduced))
        if residual is not None:
            out = out + residual
        return torch.sigmoid(out), reduced


#: Official checkpoint entry -> attribute of :class:`CrossFuse`.
CHECKPOINT_PARTS = {"DIDF_Encoder": "encoder", "DIDF_Decoder": "decoder",
                    "BaseFuseLayer": "base_fuse", "DetailFuseLayer": "detail_fuse"}


class CrossFuse(nn.Module):
    """The whole network: shared encoder, decoder, and the base and detail fusion layers."""

    def __init__(self, cfg: NetworkConfig = NetworkConfig()) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.base_fuse = BaseFeatureExtraction(cfg.dim, cfg.heads, cfg.base_ffn_expansion)
        self.detail_fuse = DetailFeatureExtraction(cfg.dim, cfg.fuse_detail_nodes)

    def forward(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        """Fuse (B, 1, H, W) infrared and visible Y in [0, 1]; returns the sigmoid output (B, 1, H, W).

        The one function of the package whose images stay positional: a module's ``forward`` is
        called positionally by ``nn.DataParallel``'s scatter, tracing and export, and (ir, vis)
        is the official release's order. Pass them by name (``model(ir=..., vis_y=...)``) where
        the order is not obvious; every other function takes ir, vis and fused by keyword only."""
        vb, vd, _ = self.encoder(vis_y)
        ib, id_, _ = self.encoder(ir)
        fused, _ = self.decoder(vis_y, self.base_fuse(vb + ib), self.detail_fuse(vd + id_))
        return fused

    def official_state(self, *, prefix: str = "module.") -> dict[str, dict[str, torch.Tensor]]:
        """The four state dicts of an official checkpoint (keys prefixed like nn.DataParallel's)."""
        return {name: {prefix + k: v for k, v in getattr(self, attr).state_dict().items()}
                for name, attr in CHECKPOINT_PARTS.items()}

    def load_official(self, checkpoint: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load the four state dicts of an official checkpoint, with or without ``module.`` prefixes."""
        missing = [name for name in CHECKPOINT_PARTS if name not in checkpoint]
        if missing:
            raise KeyError(f"checkpoint lacks {missing}; an official checkpoint holds {list(CHECKPOINT_PARTS)}")
        for name, attr in CHECKPOINT_PARTS.items():
            state = {k.removeprefix("module."): v for k, v in checkpoint[name].items()}
            getattr(self, attr).load_state_dict(state)
