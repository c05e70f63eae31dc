"""The two-phase CrossFuse trainer on Zarr corpora (CPU or CUDA; DDP under torchrun).

Phase I (``phase1_epochs``) trains encoder and decoder to reconstruct visible Y and infrared;
phase II adds the fusion layers and trains on the fusion loss with the weak/aggressive
consistency term weighted by a cosine-decaying beta. Everything random is derived from the seed,
the epoch and the step, and the full state is checkpointed each epoch, so ``resume`` continues
exactly where a killed run stopped.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crossfuse.errors import CrossfuseError, StoreExistsError
from crossfuse.manifest import absolute
from crossfuse.fusion import checkpoint, losses
from crossfuse.fusion.config import RunData, TrainConfig, to_toml
from crossfuse.fusion.data import Corpora, PatchBatches, to_model_inputs
from crossfuse.fusion.network import CHECKPOINT_PARTS, CrossFuse
from crossfuse.fusion.plots import loss_curve
from crossfuse.progress import Progress, no_progress


class TrainingDiverged(CrossfuseError, RuntimeError):
    """Too many consecutive steps skipped for a NaN or infinite loss or gradient."""


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """``epochs_done`` of the run in all, ``epochs_run`` of them by this call (0: the run was
    already finished); ``final_loss``: the last logged step's loss."""

    run_dir: str
    epochs_done: int
    epochs_run: int
    steps: int
    last_checkpoint: str
    seconds: float
    final_loss: float


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(parts: dict[str, nn.Module], cfg: TrainConfig):
    """One Adam over a parameter group per sub-network (numerically the release's four Adams),
    and its StepLR scheduler."""
    groups = [{"params": list(m.parameters()), "name": name} for name, m in parts.items()]
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def _all_finite(values: torch.Tensor, dist_info: _Dist) -> bool:
    """Whether every entry of ``values`` is finite on every rank."""
    flag = torch.isfinite(values.detach()).all().to(torch.float32).reshape(1)
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _non_finite(values: dict[str, torch.Tensor]) -> list[str]:
    return [name for name, v in values.items() if not bool(torch.isfinite(v.detach()).all())]


def _backward_and_clip(loss: torch.Tensor, parts: dict[str, nn.Module], clip_norm: float) -> dict[str, torch.Tensor]:
    """Backpropagate ``loss`` and clip each sub-network's gradient norm; returns each part's
    gradient norm before clipping (non-finite when any of its gradients is)."""
    loss.backward()
    return {name: nn.utils.clip_grad_norm_(part.parameters(), max_norm=clip_norm, norm_type=2)
            for name, part in parts.items()}


def _step_losses(parts: dict[str, nn.Module], vis: torch.Tensor, ir: torch.Tensor, *, phase: int, beta: float,
                 cfg: TrainConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Forward one batch. Visible and infrared go through the encoder (and in phase I the decoder)
    together, one call each, which also suits DDP (one forward per module per step)."""
    n = vis.shape[0]
    base, detail, _ = parts["encoder"](torch.cat([vis, ir]))
    feats = {"base_v": base[:n], "base_i": base[n:], "detail_v": detail[:n], "detail_i": detail[n:]}
    if phase == 1:
        rec, _ = parts["decoder"](torch.cat([vis, ir]), base, detail)
        return losses.reconstruction_loss(vis, rec[:n], ir, rec[n:], feats)
    fused_base = parts["base_fuse"](feats["base_v"] + feats["base_i"])
    fused_detail = parts["detail_fuse"](feats["detail_v"] + feats["detail_i"])
    fused, _ = parts["decoder"](vis, fused_base, fused_detail)
    return losses.fusion_loss(vis, ir, fused.float(), feats, beta=beta, generator=generator, crop=cfg.crop,
                              blur=(cfg.blur_width, cfg.blur_height), sigma_range=(cfg.sigma_min, cfg.sigma_max))


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


#: What a run folder holds (the checkpoints folder: only ``epoch_*.pth`` and ``latest.pth``).
RUN_FILES = ("config.toml", "log.jsonl", "loss_phase1.png", "loss_phase2.png")


def clear_run(run: Path) -> None:
    """Remove a run's own files from ``run`` (never anything else a user put there)."""
    for name in RUN_FILES:
        (run / name).unlink(missing_ok=True)
    ckpts = run / "checkpoints"
    if ckpts.is_dir():
        for path in list(ckpts.glob("epoch_*.pth")) + list(ckpts.glob("*.pth.tmp")) + [ckpts / "latest.pth"]:
            path.unlink(missing_ok=True)


def train(*, data: list[str], out: str, cfg: TrainConfig, weights: list[float] | None = None, resume: bool = False,
          overwrite: bool = False, progress: Progress = no_progress) -> TrainResult:
    """Train on the corpora ``data`` into the run folder ``out`` (checkpoints, config, logs, curves).
    An existing run is continued with ``resume`` or replaced with ``overwrite``, never silently."""
    device = pick_device(cfg.device)
    dist_info = _init_distributed(device)
    if device.type == "cuda" and dist_info.world > 1:
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    run = Path(out)
    ckpt_dir = run / "checkpoints"
    latest = ckpt_dir / "latest.pth"
    if resume and overwrite:
        raise CrossfuseError("--resume continues the run in --out and --overwrite replaces it; pass one of them.")
    if not resume and (latest.exists() or (run / "config.toml").exists()):
        if not overwrite:
            raise StoreExistsError(f"{run} already holds a run; pass --resume to continue it, --overwrite to "
                                   "replace it, or choose another --out.")
    if resume and not latest.exists():
        if not (run / "config.toml").exists():
            raise CrossfuseError(f"--resume: {run} holds no run ({latest} does not exist); start it without --resume.")
        resume, overwrite = False, True  # killed before its first checkpoint: nothing to keep, start again
    corpora = Corpora(data, weights)
    if corpora.patch < cfg.crop:
        raise CrossfuseError(f"crop {cfg.crop} is larger than the corpora's {corpora.patch}x{corpora.patch} patches; "
                             "lower crop in the config.")
    if dist_info.main:
        if overwrite:  # only once the corpora and config have been checked
            clear_run(run)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        recorded = RunData(stores=tuple(absolute(u) for u in data), weights=tuple(weights) if weights else None)
        (run / "config.toml").write_text(to_toml(cfg, recorded))

    torch.manual_seed(cfg.seed)
    model = CrossFuse(cfg.network).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    parts: dict[str, nn.Module] = {attr: getattr(model, attr) for attr in CHECKPOINT_PARTS.values()}
    opt, sched = make_optimizer(parts, cfg)
    start_epoch, step = 0, 0
    history: list[dict[str, float]] = []
    if resume:
        payload = checkpoint.read(str(latest))
        model.load_official(payload)
        state = payload["crossfuse"]
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
        if dist_info.main:
            history = _read_history(run / "log.jsonl", step)
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        parts = {k: DDP(m, device_ids=ids) for k, m in parts.items()}

    dataset = PatchBatches(corpora, batch_size=cfg.batch_size, seed=cfg.seed, rank=dist_info.rank,
                           world=dist_info.world, buffer_chunks=cfg.buffer_chunks)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=cfg.loader_workers,
                                         persistent_workers=False, pin_memory=device.type == "cuda")
    log = open(run / "log.jsonl", "a") if dist_info.main else None
    started = time.perf_counter()
    bad_streak = 0
    final = float("nan")
    last_path = str(latest)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            phase = 1 if epoch < cfg.phase1_epochs else 2
            beta = losses.beta_schedule(epoch - cfg.phase1_epochs, cfg.epochs - cfg.phase1_epochs, cfg.beta_max)
            dataset.set_epoch(epoch)
            n_batches = len(dataset)
            if cfg.steps_per_epoch:
                n_batches = min(n_batches, cfg.steps_per_epoch)
            for part in parts.values():
                part.train()
            with progress(f"epoch {epoch + 1}/{cfg.epochs} (phase {'I' if phase == 1 else 'II'})", n_batches) as advance:
                for vis, ir in itertools.islice(loader, n_batches):
                    vis, ir = to_model_inputs(vis.to(device, non_blocking=True), ir.to(device, non_blocking=True))
                    if cfg.channels_last:
                        vis, ir = (t.contiguous(memory_format=torch.channels_last) for t in (vis, ir))
                    gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step * 1_009 + dist_info.rank) % 2**63)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                        terms = _step_losses(parts, vis, ir, phase=phase, beta=beta, cfg=cfg, generator=gen)
                    loss = terms["loss"].float()
                    step += 1
                    opt.zero_grad(set_to_none=True)
                    problem = None
                    if not _all_finite(loss, dist_info):
                        problem = f"non-finite loss (terms {', '.join(_non_finite(terms))})"
                    else:
                        norms = _backward_and_clip(loss, parts, cfg.clip_norm)
                        if not _all_finite(torch.stack(list(norms.values())), dist_info):
                            problem = (f"finite loss {loss.item():.4g} but non-finite gradients "
                                       f"in {', '.join(_non_finite(norms)) or 'another rank'}")
                    if problem:
                        bad_streak += 1
                        warnings.warn(f"step {step} (epoch {epoch + 1}): {problem}; step skipped, weights unchanged "
                                      f"({bad_streak} in a row)", stacklevel=1)
                        if bad_streak >= cfg.nan_patience:
                            raise TrainingDiverged(_diverged_message(bad_streak, step, problem))
                        advance(1, "skipped")
                        continue
                    bad_streak = 0
                    opt.step()
                    final = loss.item()
                    record = {"epoch": epoch, "step": step, "phase": phase, "lr": opt.param_groups[0]["lr"],
                              "beta": beta if phase == 2 else 0.0, **{k: float(v.detach()) for k, v in terms.items()}}
                    history.append(record)
                    if log is not None:
                        log.write(json.dumps(record) + "\n")
                    advance(1, f"loss {final:.4f}")
            sched.step()
            for group in opt.param_groups:
                group["lr"] = max(group["lr"], cfg.min_lr)
            if dist_info.main:
                log.flush()
                state = {"epoch": epoch, "step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "rng": _rng_state(), "config": cfg.to_dict()}
                last_path = str(ckpt_dir / f"epoch_{epoch + 1:04d}.pth")
                checkpoint.save(last_path, model, state)
                checkpoint.save(str(latest), model, state)
                _plot(history, run)
            if dist_info.world > 1:
                import torch.distributed as dist

                dist.barrier()
    finally:
        if log is not None:
            log.close()
    if history and not math.isfinite(final):
        final = float(history[-1]["loss"])
    return TrainResult(run_dir=str(run), epochs_done=cfg.epochs, epochs_run=max(0, cfg.epochs - start_epoch),
                       steps=step, last_checkpoint=last_path, seconds=time.perf_counter() - started, final_loss=final)


def _diverged_message(streak: int, step: int, problem: str) -> str:
    if problem.startswith("non-finite loss"):
        advice = "lower lr, or check the corpora for broken patches"
    else:
        advice = ("a loss term or layer is not differentiable on some patch of this data (a constant patch, "
                  "say); the loss was fine, so lowering lr will not help: report it with the run's config.toml")
    return (f"{streak} consecutive steps skipped up to step {step}, the last with {problem}; {advice}. "
            "Checkpoints written so far hold finite weights.")


def _read_history(path: Path, upto_step: int) -> list[dict[str, float]]:
    """Log records up to ``upto_step`` (the last checkpoint), dropping those of an epoch that a
    kill interrupted; the log file is rewritten to match."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in records if r["step"] <= upto_step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _plot(history: list[dict[str, float]], run: Path) -> None:
    for phase, name in ((1, "I"), (2, "II")):
        values = [r["loss"] for r in history if r["phase"] == phase]
        if values:
            loss_curve(values, str(run / f"loss_phase{phase}.png"), title=f"phase {name} loss per step")
