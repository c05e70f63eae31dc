"""The trainer's pictures: loss curves (matplotlib) and sample sheets of fixed patches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from crossfuse.plotting import comparison_sheet, image_for_sheet, pyplot, save_figure


def loss_curve(history: Sequence[dict[str, float]], path: str, *, title: str) -> None:
    """Plot the total loss of each logged step (and a running mean over ~1/50 of them) and each
    loss term, against the step number; epochs are marked."""
    plt = pyplot()
    steps = np.array([r["step"] for r in history], dtype=np.int64)
    fig, (ax, terms_ax) = plt.subplots(1, 2, figsize=(12, 4))
    loss = np.array([r["loss"] for r in history], dtype=np.float64)
    ax.plot(steps, loss, color="0.75", linewidth=0.8, label="loss per step")
    k = max(1, len(loss) // 50)
    if k > 1:
        ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), color="tab:blue", linewidth=2,
                label=f"running mean of {k}")
    names = [n for n in history[0] if n not in ("epoch", "step", "phase", "lr", "beta", "loss")] if history else []
    for name in names:
        terms_ax.plot(steps, [r.get(name, np.nan) for r in history], linewidth=1, label=name)
    epoch_starts = [r["step"] for i, r in enumerate(history) if i == 0 or history[i - 1]["epoch"] != r["epoch"]]
    for axis in (ax, terms_ax):
        for first in epoch_starts:
            axis.axvline(first, color="0.9", linewidth=0.8, zorder=0)
        axis.set_xlabel("step (vertical lines: epoch starts)")
        axis.legend(fontsize=8)
    ax.set_ylabel("total loss")
    terms_ax.set_ylabel("loss term (unweighted)")
    terms_ax.set_yscale("log")
    ax.set_title(title)
    terms_ax.set_title("terms")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


@torch.no_grad()
def sample_sheet(fusion_model, net, vis: torch.Tensor, ir: torch.Tensor, path: str, *, phase: int, title: str) -> None:
    """Fixed patches through ``net`` (a network of ``fusion_model``) in eval mode: visible Y |
    infrared | the model's outputs for ``phase`` (CrossFuse phase I: the reconstructions; fused
    otherwise). ``vis``/``ir``: (n, 1, P, P) in [0, 1]."""
    was_training = net.training
    net.eval()
    outputs, titles = fusion_model.preview(net, vis=vis, ir=ir, phase=phase)
    net.train(was_training)
    columns = [_u8(vis), _u8(ir)] + [_u8(o) for o in outputs]
    rows = [(f"patch {i + 1}", [col[i, 0] for col in columns]) for i in range(len(vis))]
    comparison_sheet(rows, titles, path, cell_inches=1.8, suptitle=title)


def fused_sheet(dataset, fused_dir: str, path: str, *, pairs: int = 4) -> int:
    """IR | VIS | fused for the first ``pairs`` pairs of ``dataset`` that have a fused image in
    ``fused_dir``; returns the number of rows drawn (0: nothing written)."""
    import os

    from crossfuse.fusion.inference import output_path
    from crossfuse.imageio import read_pair

    rows = []
    for pair in dataset.pairs:
        if len(rows) == pairs:
            break
        fused = output_path(fused_dir, pair.id)
        if os.path.exists(fused):
            loaded = read_pair(dataset, pair)
            rows.append((pair.id, [loaded.ir, loaded.vis, image_for_sheet(fused)]))
    if rows:
        comparison_sheet(rows, ["infrared", "visible", "fused"], path, cell_inches=3.2,
                         suptitle=f"{dataset.name}: {fused_dir}")
    return len(rows)
