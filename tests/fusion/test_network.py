import numpy as np
import pytest
import torch

from crossfuse.fusion.network import CrossFuse, NetworkConfig
from tests.helpers import REFERENCE, needs_reference

TINY = NetworkConfig(dim=16, heads=2, encoder_blocks=1, decoder_blocks=1, detail_nodes=1)


@needs_reference
def test_official_oracle_reproduced():
    ref = np.load(REFERENCE / "official_net_seed0.npz")
    net = CrossFuse().eval()
    net.load_official(torch.load(REFERENCE / "official_net_seed0.pth", weights_only=True))
    ir = torch.from_numpy(ref["ir"] / 255.0).float()[None, None]
    vis = torch.from_numpy(ref["vis_y"] / 255.0).float()[None, None]
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
