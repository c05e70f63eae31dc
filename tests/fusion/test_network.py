import numpy as np
import pytest
import torch

from crossfuse.fusion.network import CrossFuse, LayerNorm, NetworkConfig, _channel_attention
from tests.helpers import REFERENCE, needs_reference

TINY = NetworkConfig(dim=16, heads=2, encoder_blocks=1, decoder_blocks=1, detail_nodes=1)


@needs_reference
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_official_oracle_reproduced(layout):
    ref = np.load(REFERENCE / "official_net_seed0.npz")
    net = CrossFuse().eval()
    net.load_official(torch.load(REFERENCE / "official_net_seed0.pth", weights_only=True))
    net.to(memory_format=layout)
    ir = torch.from_numpy(ref["ir"] / 255.0).float()[None, None].contiguous(memory_format=layout)
    vis = torch.from_numpy(ref["vis_y"] / 255.0).float()[None, None].contiguous(memory_format=layout)
    with torch.no_grad():
        out = net(ir, vis)[0, 0].numpy()
    assert np.abs(out - ref["fused_raw"]).max() < 1e-5
    u8 = ((out - out.min()) / (out.max() - out.min()) * 255).astype(np.uint8)
    assert np.abs(u8.astype(int) - ref["fused_u8"]).max() <= 1


@needs_reference
def test_parameter_names_and_shapes_are_the_official_ones():
    rows = [line.split("\t") for line in (REFERENCE / "official_checkpoint_keys.tsv").read_text().splitlines()[1:]]
    expected = {(g, k): tuple(int(s) for s in shape.split("x")) for g, k, shape in rows}
    ours = {(g, k): tuple(v.shape) for g, sd in CrossFuse().official_state().items() for k, v in sd.items()}
    assert ours == expected


def test_loads_with_and_without_module_prefix():
    a, b = CrossFuse(TINY), CrossFuse(TINY)
    b.load_official(a.official_state(prefix=""))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    b.load_official(a.official_state())
    with pytest.raises(KeyError, match="DIDF_Decoder"):
        b.load_official({"DIDF_Encoder": {}})


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 37, 53)])
def test_shapes_range_and_modes(shape):
    torch.manual_seed(0)
    net = CrossFuse(TINY)
    ir, vis = torch.rand(shape), torch.rand(shape)
    base, detail, shared = net.encoder(vis)
    assert base.shape == detail.shape == shared.shape == (shape[0], 16) + shape[2:]
    for mode in (net.train, net.eval):
        mode()
        out = net(ir, vis)
        assert out.shape == shape and torch.isfinite(out).all() and (out > 0).all() and (out < 1).all()
    with torch.no_grad():
        assert torch.equal(net(ir, vis), net(ir, vis))  # no dropout or batch statistics


def test_gradients_reach_every_parameter():
    net = CrossFuse(TINY)
    net(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_channels_last_kernels_equal_the_nchw_formulas():
    """The fused layer norm and the GEMM channel attention that channels_last input takes give
    the release's NCHW formulas' numbers, forward and backward."""
    torch.manual_seed(0)
    qkv = torch.randn(2, 3 * 32, 9, 13, requires_grad=True)
    scale = torch.rand(4, 1, 1) + 0.5
    norm = LayerNorm(32)
    with torch.no_grad():
        norm.body.weight.uniform_(0.5, 1.5)
        norm.body.bias.uniform_(-0.5, 0.5)
    outs, grads = [], []
    for layout in (torch.contiguous_format, torch.channels_last):
        x = qkv.detach().contiguous(memory_format=layout).requires_grad_(True)
        q, k, v = x.chunk(3, dim=1)
        out = _channel_attention(norm(q), k, v, 4, scale)
        assert out.is_contiguous(memory_format=layout)
        (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    assert (outs[0] - outs[1]).abs().max() < 1e-6
    assert (grads[0] - grads[1]).abs().max() < 1e-5


def test_channels_last_training_gradients_match_nchw():
    grads = []
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        net = CrossFuse(NetworkConfig(dim=16, heads=4, encoder_blocks=1, decoder_blocks=1, detail_nodes=1))
        net.to(memory_format=layout)
        ir, vis = (torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(s)).contiguous(memory_format=layout)
                   for s in (1, 2))
        net(ir, vis).mean().backward()
        grads.append([p.grad for p in net.parameters()])
    assert max(float((a - b).abs().max()) for a, b in zip(*grads)) < 1e-6
