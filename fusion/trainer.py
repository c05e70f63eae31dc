"""The trainer of every fusion model on Zarr corpora (CPU or CUDA; DDP under torchrun).

The config's ``model`` (:mod:`crossfuse.models`) supplies the network, its sub-networks, its
phases and its loss; everything else (corpora, optimiser, checkpoints, resume, DDP, bf16,
channels_last, the finite checks) is the same for all. CrossFuse has two phases: phase I
(``phase1_epochs``) trains encoder and decoder to reconstruct visible Y and infrared; phase II
adds the fusion layers and trains on the fusion loss with the weak/aggressive consistency term
weighted by a cosine-decaying beta. The other models train in one phase. Everything random is derived from the seed,
the epoch and the step, and the full state is checkpointed each epoch, so ``resume`` continues
exactly where a killed run stopped.

:func:`train` runs a whole run; a caller that wants to drive training itself (a benchmark, an
experiment runner, a notebook) uses the parts: :meth:`Trainer.setup` (device, DDP, run folder,
model, optimiser, loader; :meth:`Trainer.restore` when resuming), :meth:`Trainer.run_epoch`,
:meth:`Trainer.train_step` for one batch, :meth:`Trainer.save`, :meth:`Trainer.close`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crossfuse import atomic
from crossfuse import lock as _lock
from crossfuse.errors import ConfigError, OutputExistsError, ParameterError, RunLockedError, TrainingDiverged
from crossfuse.fusion import checkpoint, losses
from crossfuse.fusion.checkpoint import TrainingState
from crossfuse.fusion.config import RunData, TrainConfig, to_toml
from crossfuse import corpus
from crossfuse.corpus.reading import fixed_patches, to_model_inputs
from crossfuse import models
from crossfuse.fusion.plots import loss_curve, sample_sheet
from crossfuse.models.base import Model
from crossfuse.fusion.runtime import Dist, barrier, init_distributed, pick_device
from crossfuse.fusion.steps import make_optimizer, optimise, step_losses
from crossfuse.manifest import absolute
from crossfuse.progress import Progress, no_progress

__all__ = ["Trainer", "TrainResult", "train", "step_losses", "make_optimizer", "clear_run"]


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


#: The lock file a training holds inside its run folder (one training per folder at a time).
LOCK_FILE = "train.lock"


def lock_run(run: Path) -> str:
    """Take the run folder's lock (creating the folder); returns the lock file's path. Raises
    :class:`RunLockedError` naming the holder when another live process trains there."""
    path = str(run / LOCK_FILE)

    def busy(who: str) -> RunLockedError:
        return RunLockedError(f"{run} is being trained by another process: {who} Wait for it to finish (then "
                              "--resume), or choose another --out.")

    run.mkdir(parents=True, exist_ok=True)
    _lock.acquire(path, subject=str(run), busy=busy)
    return path


#: What a run folder holds (the checkpoints folder: only ``epoch_*.pth`` and ``latest.pth``).
RUN_FILES = ("config.toml", "log.jsonl", "loss_phase1.png", "loss_phase2.png", "samples_phase1.png",
             "samples_phase2.png")


def clear_run(run: Path) -> None:
    """Remove a run's own files from ``run`` (never anything else a user put there)."""
    for name in RUN_FILES:
        (run / name).unlink(missing_ok=True)
    ckpts = run / "checkpoints"
    if ckpts.is_dir():
        for path in list(ckpts.glob("epoch_*.pth")) + list(ckpts.glob("*.tmp")) + [ckpts / "latest.pth"]:
            path.unlink(missing_ok=True)


def _check_run_folder(run: Path, *, resume: bool, overwrite: bool) -> tuple[bool, bool]:
    """Refuse to mix runs; returns the effective (resume, overwrite). A run killed before its first
    checkpoint has nothing to keep, so resuming it starts it again."""
    latest = run / "checkpoints" / "latest.pth"
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it; pass one of them.")
    if not resume and (latest.exists() or (run / "config.toml").exists()) and not overwrite:
        raise OutputExistsError(f"{run} already holds a run; pass --resume to continue it, --overwrite to "
                                "replace it, or choose another --out.")
    if resume and not latest.exists():
        if not (run / "config.toml").exists():
            raise ConfigError(f"--resume: {run} holds no run ({latest} does not exist); start it without --resume.")
        return False, True
    return resume, overwrite


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


@dataclass(eq=False, kw_only=True)
class Trainer:
    """A run being trained: its config, run folder, device and DDP place, model and its
    sub-networks (DDP-wrapped when distributed), optimiser, scheduler, loader, and progress
    (``epoch``: the next epoch to run; ``step``: steps taken so far)."""

    cfg: TrainConfig
    run: Path
    device: torch.device
    dist: Dist
    model: nn.Module  # the network
    parts: dict[str, nn.Module]
    opt: torch.optim.Optimizer
    sched: Any
    loader: corpus.PatchLoader  # the public reader: the trainer reads corpora as any other model does
    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    last_checkpoint: str = ""
    samples: tuple[torch.Tensor, torch.Tensor] | None = None  # fixed uint8 patches for the sample sheets
    fusion_model: Model | None = None  # the model the config names (set by setup)
    _bad_streak: int = 0
    _log: Any = None
    _lock_file: str = ""

    @classmethod
    def setup(cls, *, data: list[str], out: str, cfg: TrainConfig, weights: list[float] | None = None,
              resume: bool = False, overwrite: bool = False) -> Trainer:
        """Everything before the first step: device and DDP, run-folder checks, corpora, the
        config written, model (seeded), optimiser, the latest checkpoint restored when resuming,
        DDP wrappers and the loader. Nothing in the run folder is touched before the corpora and
        config have been checked."""
        device = pick_device(cfg.device)
        dist_info = init_distributed(device)
        if device.type == "cuda" and dist_info.world > 1:
            device = torch.device("cuda", dist_info.local_rank)
            torch.cuda.set_device(device)
        run = Path(out)
        made = not run.exists()
        held = lock_run(run) if dist_info.main else ""
        try:
            return cls._setup(run, data=data, cfg=cfg, weights=weights, resume=resume, overwrite=overwrite,
                              device=device, dist_info=dist_info, held=held)
        except BaseException:
            if held:
                _lock.release(held)
                if made:  # the folder made only to hold the lock: nothing is left behind
                    with contextlib.suppress(OSError):
                        run.rmdir()
            raise

    @classmethod
    def _setup(cls, run: Path, *, data: list[str], cfg: TrainConfig, weights: list[float] | None, resume: bool,
               overwrite: bool, device: torch.device, dist_info: Dist, held: str) -> Trainer:
        resume, overwrite = _check_run_folder(run, resume=resume, overwrite=overwrite)
        loader = corpus.PatchLoader(data, batch_size=cfg.batch_size, seed=cfg.seed, weights=weights, fields=("vis", "ir"),
                                    rank=dist_info.rank, world=dist_info.world, workers=cfg.loader_workers,
                                    buffer_chunks=cfg.buffer_chunks, pin_memory=device.type == "cuda")
        if loader.patch < cfg.crop:
            raise ParameterError(f"crop {cfg.crop} is larger than the corpora's {loader.patch}x{loader.patch} "
                                 "patches; lower crop in the config.")
        if dist_info.main:
            if overwrite:
                clear_run(run)
            (run / "checkpoints").mkdir(parents=True, exist_ok=True)
            recorded = RunData(stores=tuple(absolute(u) for u in data), weights=tuple(weights) if weights else None,
                               corpora=tuple(r.record_sha256 or r.content_sha256() for r in loader.records))
            atomic.write_text(str(run / "config.toml"), to_toml(cfg, recorded))
        torch.manual_seed(cfg.seed)
        fusion_model = models.get(cfg.model)
        model = fusion_model.build(cfg.network).to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        parts: dict[str, nn.Module] = fusion_model.parts(model)
        opt, sched = make_optimizer(parts, cfg)
        trainer = cls(cfg=cfg, run=run, device=device, dist=dist_info, model=model, parts=parts, opt=opt,
                      fusion_model=fusion_model,
                      sched=sched, loader=loader, last_checkpoint=str(run / "checkpoints" / "latest.pth"),
                      samples=fixed_patches(loader.corpora.urls) if dist_info.main else None, _lock_file=held)
        if resume:
            trainer.restore(str(run / "checkpoints" / "latest.pth"))
        trainer._wrap_ddp()
        if dist_info.main:
            trainer._log = open(run / "log.jsonl", "a")
        return trainer

    def restore(self, path: str) -> None:
        """Continue from checkpoint ``path``: weights, optimiser, scheduler, RNG states (CUDA's
        too), epoch and step; the log is cut back to that checkpoint's step."""
        payload, state = checkpoint.read_state(path)
        checkpoint.identify(payload, path, self.cfg.model)
        checkpoint.load_weights(self.fusion_model, self.model, payload, path)
        self.opt.load_state_dict(state.optimizer)
        self.sched.load_state_dict(state.scheduler)
        torch.set_rng_state(state.rng["torch"])
        if "cuda" in state.rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state.rng["cuda"])
        self.epoch, self.step = state.epoch + 1, state.step
        if self.dist.main:
            self.history = _read_history(self.run / "log.jsonl", self.step)

    def _wrap_ddp(self) -> None:
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.parts = {k: DDP(m, device_ids=ids) for k, m in self.parts.items()}

    def phase(self, epoch: int) -> tuple[int, float]:
        """The phase of ``epoch`` and its beta (CrossFuse: 1 or 2, beta 0 in phase I; other models: 1)."""
        return self.fusion_model.phase(epoch, self.cfg)

    def train_step(self, vis: torch.Tensor, ir: torch.Tensor, *, epoch: int) -> dict[str, float] | None:
        """One step on a uint8 batch from the loader: forward, the finite checks, backward and the
        optimiser step. Returns the step's log record, or None when it was skipped (a warning says
        why); ``nan_patience`` skips in a row raise :class:`TrainingDiverged`."""
        cfg, phase_beta = self.cfg, self.phase(epoch)
        phase, beta = phase_beta
        vis, ir = to_model_inputs(vis.to(self.device, non_blocking=True), ir.to(self.device, non_blocking=True))
        if cfg.channels_last:
            vis, ir = (t.contiguous(memory_format=torch.channels_last) for t in (vis, ir))
        gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + self.step * 1_009 + self.dist.rank) % 2**63)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            terms = self.fusion_model.step_losses(self.parts, vis=vis, ir=ir, phase=phase, beta=beta, cfg=cfg,
                                                  generator=gen)
        self.step += 1
        outcome = optimise(terms, self.parts, self.opt, clip_norm=cfg.clip_norm, dist_info=self.dist)
        if outcome.problem:
            self._bad_streak += 1
            warnings.warn(f"step {self.step} (epoch {epoch + 1}): {outcome.problem}; step skipped, weights unchanged "
                          f"({self._bad_streak} in a row)", stacklevel=2)
            if self._bad_streak >= cfg.nan_patience:
                raise TrainingDiverged(_diverged_message(self._bad_streak, self.step, outcome.problem))
            return None
        self._bad_streak = 0
        record = {"epoch": epoch, "step": self.step, "phase": phase, "lr": self.opt.param_groups[0]["lr"],
                  "beta": beta, **{k: float(v.detach()) for k, v in terms.items()}}
        self.history.append(record)
        if self._log is not None:
            with atomic.reported(str(self.run / "log.jsonl")):
                self._log.write(json.dumps(record) + "\n")
        return record

    def run_epoch(self, progress: Progress = no_progress) -> None:
        """Train epoch ``self.epoch`` (at most ``steps_per_epoch`` steps), step the scheduler,
        checkpoint, and move on to the next epoch."""
        epoch, cfg = self.epoch, self.cfg
        phase, _ = self.phase(epoch)
        self.loader.set_epoch(epoch)
        n_batches = min(len(self.loader), cfg.steps_per_epoch) if cfg.steps_per_epoch else len(self.loader)
        for part in self.parts.values():
            part.train()
        label = f"epoch {epoch + 1}/{cfg.epochs}" + (f" (phase {'I' if phase == 1 else 'II'})"
                                                     if self.fusion_model.phases > 1 else f" ({cfg.model})")
        with progress(label, n_batches) as advance:
            for batch in itertools.islice(self.loader, n_batches):
                record = self.train_step(batch["vis"], batch["ir"], epoch=epoch)
                advance(1, "skipped" if record is None else f"loss {record['loss']:.4f}")
        self.sched.step()
        for group in self.opt.param_groups:
            group["lr"] = max(group["lr"], cfg.min_lr)
        self.save(epoch)
        self.epoch = epoch + 1

    def save(self, epoch: int) -> None:
        """Checkpoint after ``epoch`` (``epoch_NNNN.pth`` and ``latest.pth``, on the main rank)
        and redraw the loss curves; every rank waits for it."""
        if self.dist.main:
            with atomic.reported(str(self.run / "log.jsonl")):
                self._log.flush()
            state = TrainingState(epoch=epoch, step=self.step, optimizer=self.opt.state_dict(),
                                  scheduler=self.sched.state_dict(), rng=_rng_state(), config=self.cfg)
            self.last_checkpoint = str(self.run / "checkpoints" / f"epoch_{epoch + 1:04d}.pth")
            checkpoint.save(self.last_checkpoint, self.model, state, model=self.fusion_model)
            _plot(self.history, self.run)
            phase, _ = self.phase(epoch)
            if epoch + 1 in (self.cfg.phase1_epochs, self.cfg.epochs) and self.samples is not None:
                vis, ir = (t.to(self.device) for t in to_model_inputs(*self.samples))
                sample_sheet(self.fusion_model, self.model, vis, ir, str(self.run / f"samples_phase{phase}.png"),
                             phase=phase,
                             title=f"{self.run.name}: phase {'I' if phase == 1 else 'II'} after epoch {epoch + 1}")
            # latest.pth last: an epoch counts as done (for --resume) only once its curves and
            # sample sheets are written too, so an interrupt before then runs the epoch again
            checkpoint.save(str(self.run / "checkpoints" / "latest.pth"), self.model, state, model=self.fusion_model)
        barrier(self.dist)

    def close(self) -> None:
        """Close the log and release the run folder's lock."""
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._lock_file:
            _lock.release(self._lock_file)
            self._lock_file = ""


def train(*, data: list[str], out: str, cfg: TrainConfig, weights: list[float] | None = None, resume: bool = False,
          overwrite: bool = False, progress: Progress = no_progress) -> TrainResult:
    """Train on the corpora ``data`` into the run folder ``out`` (checkpoints, config, logs, curves).
    An existing run is continued with ``resume`` or replaced with ``overwrite``, never silently."""
    trainer = Trainer.setup(data=data, out=out, cfg=cfg, weights=weights, resume=resume, overwrite=overwrite)
    started, first = time.perf_counter(), trainer.epoch
    try:
        while trainer.epoch < cfg.epochs:
            trainer.run_epoch(progress)
    finally:
        trainer.close()
    final = float(trainer.history[-1]["loss"]) if trainer.history else math.nan
    return TrainResult(run_dir=str(trainer.run), epochs_done=cfg.epochs, epochs_run=max(0, cfg.epochs - first),
                       steps=trainer.step, last_checkpoint=trainer.last_checkpoint,
                       seconds=time.perf_counter() - started, final_loss=final)


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
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number < len(lines):
                raise ConfigError(f"{path} line {number} is not a JSON record ({exc}); the log is damaged. Restore "
                                  "it, or remove the line to resume without that step's record.") from exc
            warnings.warn(f"{path}: its last line was cut off (a kill during a write); dropped it and resuming",
                          stacklevel=3)
    kept = [r for r in records if r["step"] <= upto_step]
    atomic.write_text(str(path), "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _plot(history: list[dict[str, float]], run: Path) -> None:
    for phase, name in ((1, "I"), (2, "II")):
        records = [r for r in history if r["phase"] == phase]
        if records:
            loss_curve(records, str(run / f"loss_phase{phase}.png"), title=f"phase {name} loss per step")
