"""Each model against numbers made by running its official code (tests/data/*_oracle.npz; each
file names the repository and commit it came from): same weights (tests.models.oracle), same
inputs (a crop of a bundled sample pair)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from crossfuse import models
from crossfuse.models.base import FuseOptions
from tests.models.oracle import oracle_weights

DATA = os.path.join(os.path.dirname(__file__), "..", "data")


def _oracle(name: str) -> dict[str, np.ndarray]:
    with np.load(os.path.join(DATA, f"{name}_oracle.npz")) as f:
        return dict(f)


def _with_oracle_weights(name: str, *, layout: str = "OIHW", scale: float = 1.0, **settings):
    model = models.get(name)
    net = model.build(model.settings(**settings))
    official = model.official_state(net)
    weights = oracle_weights({k: tuple(v.shape) for k, v in official.items()}, layout=layout, scale=scale)
    model.load_official(net, {k: torch.from_numpy(v) for k, v in weights.items()}, where="oracle weights")
    return model, net.eval()


def _close(ours: torch.Tensor | np.ndarray, theirs: np.ndarray, rel: float = 1e-6) -> float:
    ours = np.asarray(ours, dtype=np.float64)
    err = float(np.max(np.abs(ours - theirs)) / max(1.0, float(np.max(np.abs(theirs)))))
    assert err <= rel, f"largest difference {err:.3g} (relative to max(1, |oracle|)) exceeds {rel}"
    return err


def _y(vis: np.ndarray, dtype=np.float32) -> torch.Tensor:
    return torch.from_numpy(vis.astype(dtype) / 255.0)[None, None]


def test_seafusion_forward_loss_and_png_equal_the_official_code():
    from crossfuse.models.seafusion import rgb_to_ycrcb

    o = _oracle("seafusion")
    model, net = _with_oracle_weights("seafusion")
    ycc = rgb_to_ycrcb(torch.from_numpy(o["vis"].astype(np.float32) / 255.0).permute(2, 0, 1)[None])
    ir = _y(o["ir"])
    with torch.no_grad():  # forwards compare in float64 (the oracle's too): float32 noise is ~4e-6 here
        _close(model.forward_fused(net.double(), vis_y=ycc[:, :1].double(), ir=ir.double()), o["forward"])
    net.float()
    crops = [(slice(0, 32), slice(0, 32)), (slice(30, 62), slice(60, 92))]
    vb = torch.cat([ycc[:, :1, a, b] for a, b in crops])
    ib = torch.cat([ir[:, :, a, b] for a, b in crops])
    cfg = type("Cfg", (), {"network": model.settings()})
    terms = model.step_losses(model.parts(net), vis=vb, ir=ib, phase=1, beta=0.0, cfg=cfg, generator=None)
    _close(np.array([terms[k].item() for k in ("loss", "intensity", "gradient")]), o["loss"], rel=1e-5)
    png = np.asarray(model.fuse_image(net, vis_rgb=o["vis"], ir=o["ir"], device=torch.device("cpu"),
                                      options=FuseOptions(channels_last=False)))
    diff = np.abs(png.astype(int) - o["fused_png"].astype(int))
    assert png.shape == o["fused_png"].shape and diff.max() <= 1 and (diff > 0).mean() < 0.002


def test_densefuse_both_strategies_and_png_equal_the_official_code():
    o = _oracle("densefuse")
    vis_y, ir = _y(o["vis_y"]), _y(o["ir"])
    for strategy, key in (("addition", "addition"), ("l1-norm", "l1_norm")):
        model, net = _with_oracle_weights("densefuse", strategy=strategy)
        with torch.no_grad():
            _close(model.forward_fused(net.double(), vis_y=_y(o["vis_y"], np.float64), ir=_y(o["ir"], np.float64)),
                   o[key])
    model, net = _with_oracle_weights("densefuse")
    png = np.asarray(model.fuse_image(net, vis_rgb=o["vis"], ir=o["ir"], device=torch.device("cpu"),
                                      options=FuseOptions(gray=True, channels_last=False)))
    diff = np.abs(png.astype(int) - o["fused_png"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.002
    crops = [(slice(0, 64), slice(0, 64)), (slice(5, 69), slice(58, 122))]
    cfg = type("Cfg", (), {"network": model.settings()})
    terms = model.step_losses(model.parts(net.train()), vis=torch.cat([vis_y[:, :, a, b] for a, b in crops]),
                              ir=torch.cat([ir[:, :, a, b] for a, b in crops]), phase=1, beta=0.0, cfg=cfg,
                              generator=None)
    _close(np.array([terms[k].item() for k in ("loss", "pixel", "ssim")]), o["loss"], rel=1e-5)


def test_sdnet_forward_and_loss_equal_the_official_tensorflow_graph():
    o = _oracle("sdnet")
    model, net = _with_oracle_weights("sdnet", layout="HWIO", scale=2.0)
    vis_y, ir = _y(o["vis_y"]), _y(o["ir"])
    with torch.no_grad():
        from crossfuse.models.sdnet import _signed

        fused, sept_ir, sept_vi = net.double()(_signed(_y(o["ir"], np.float64)), _signed(_y(o["vis_y"], np.float64)))
    net.float()
    for ours, key in ((fused, "fused"), (sept_ir, "sept_ir"), (sept_vi, "sept_vi")):
        _close(ours.permute(0, 2, 3, 1), o[key])
    crops = [(slice(0, 64), slice(0, 64)), (slice(5, 69), slice(58, 122))]
    cfg = type("Cfg", (), {"network": model.settings()})
    terms = model.step_losses(model.parts(net), vis=torch.cat([vis_y[:, :, a, b] for a, b in crops]),
                              ir=torch.cat([ir[:, :, a, b] for a, b in crops]), phase=1, beta=0.0, cfg=cfg,
                              generator=None)
    _close(np.array([terms[k].item() for k in ("loss", "intensity", "gradient", "decomposition")]), o["loss"],
           rel=1e-5)


def test_sdnet_layers_match_tensorflow_same_convolutions():
    """The port's layout conversion and padding against TF's own ``conv2d(..., 'SAME')`` on an odd
    size, layer by layer as the official graph chains them (skipped without tensorflow)."""
    tf = pytest.importorskip("tensorflow")
    from crossfuse.models.sdnet import LAYERS, _tf_names

    model, net = _with_oracle_weights("sdnet", layout="HWIO", scale=2.0)
    official = model.official_state(net)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 23, 31, 1))  # float64 both sides: float32 noise is ~2e-6
    tensors = {"ir": tf.constant(x), "vi": tf.constant(x[:, ::-1].copy())}

    def conv(layer, t):
        w, b = _tf_names(layer)
        return tf.nn.conv2d(t, official[w].double().numpy(), strides=1, padding="SAME") + official[b].double().numpy()

    lrelu = lambda t: tf.maximum(t, 0.2 * t)  # noqa: E731 - the graph's activation
    feats = {}
    for br, t in tensors.items():
        c1 = lrelu(conv(f"layer1_{br}", t))
        c2 = lrelu(conv(f"layer2_{br}", c1))
        c3 = lrelu(conv(f"layer3_{br}", tf.concat([c1, c2], -1)))
        c4 = lrelu(conv(f"layer4_{br}", tf.concat([c1, c2, c3], -1)))
        feats[br] = (c1, c2, c3, c4)
    fused = tf.tanh(conv("layer5_fuse", tf.concat([t for p in zip(feats["ir"], feats["vi"]) for t in p], -1)))
    assert len(LAYERS) == 16
    with torch.no_grad():
        ours = net.double().squeeze(torch.from_numpy(x).permute(0, 3, 1, 2),
                           torch.from_numpy(x[:, ::-1].copy()).permute(0, 3, 1, 2))
    _close(ours.permute(0, 2, 3, 1), fused.numpy())


@pytest.mark.parametrize("name", ["seafusion", "densefuse"])
def test_official_state_dict_loads_and_a_wrong_shape_is_named(name):
    from crossfuse.errors import CheckpointError

    model, net = _with_oracle_weights(name)
    state = {k: v.clone() for k, v in model.official_state(net).items()}
    fresh = model.build(model.settings())
    model.load_official(fresh, state, where="x.pth")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values()))
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(7, 7)
    with pytest.raises(CheckpointError, match=f"x.pth does not fit {name}'s network: {key} has shape"):
        model.load_official(fresh, state, where="x.pth")


def test_parameter_counts_are_the_official_networks():
    counts = {n: sum(p.numel() for p in models.get(n).build(models.get(n).settings()).parameters())
              for n in ("seafusion", "densefuse", "sdnet")}
    # SeAFusion: 0.167M and DenseFuse: 0.074M as their official modules count; SDNet: the 32 TF variables
    assert counts == {"seafusion": 166883, "densefuse": 74193, "sdnet": 67091}
