"""How an experiment should use the cores: runs one after another with every thread, or several
runs at once with a thread each? Measured with whole runs (train, fuse a test set, score it), each
in a fresh process, as the experiment runner makes them.

    python -m benchmarks.parallel_runs [--model crossfuse] [--steps 200] [--images 12] [--runs 2]

Packs RoadScene's training split (``data_manifests/roadscene-train.json``, needs
``../shared/datasets``) into a scratch corpus once, then times ``--runs`` runs of ``--steps``
training steps (recipes/alignment-models.toml's settings: batch 8, the narrow CrossFuse or
SeAFusion at its official size) each followed by fusing and scoring the first ``--images`` pairs
of TNO's test split:

- ``sequential``: the runs one after another, each process on every core's thread;
- ``parallel``: the runs at once, each process on one thread (the cores shared out).

Prints one JSON line: wall seconds and runs an hour of each schedule. Nothing else should run
meanwhile. BENCHMARKS.md records a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.common import machine

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NARROW = {"dim": 16, "heads": 2, "encoder_blocks": 1, "decoder_blocks": 1, "detail_nodes": 1}


def one_run(corpus: str, out: str, model: str, steps: int, images: int, threads: int) -> None:
    """Train, fuse and score once in this process, on ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    from crossfuse import manifest
    from crossfuse.fusion import evaluate as ev
    from crossfuse.fusion.checkpoint import load
    from crossfuse.fusion.config import defaults
    from crossfuse.fusion.inference import fuse_dataset
    from crossfuse.fusion.trainer import train

    extra = {"network": NARROW, "phase1_epochs": 1} if model == "crossfuse" else {}
    cfg = defaults(model, epochs=2, steps_per_epoch=steps // 2, batch_size=8, device="cpu", seed=0, **extra)
    train(data=[corpus], out=os.path.join(out, "run"), cfg=cfg)
    tests = manifest.load(os.path.join(HERE, "data_manifests", "tno-test.json"))
    tests = dataclasses.replace(tests, pairs=tests.pairs[:images])
    loaded = load(os.path.join(out, "run", "checkpoints", "latest.pth"))
    fuse_dataset(loaded.net, tests, os.path.join(out, "fused"), device=torch.device("cpu"), fusion_model=loaded.model)
    ev.evaluate(os.path.join(out, "fused"), [tests], workers=1)


def _spawn(corpus: str, out: str, args: argparse.Namespace, threads: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "benchmarks.parallel_runs", "--one-run", corpus, out, "--model", args.model,
           "--steps", str(args.steps), "--images", str(args.images), "--threads", str(threads)]
    return subprocess.Popen(cmd, cwd=HERE, env=env)


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a run failed (exit {p.returncode})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="crossfuse")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--one-run", nargs=2, metavar=("CORPUS", "OUT"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.one_run:
        one_run(*args.one_run, args.model, args.steps, args.images, args.threads)
        return
    from crossfuse import manifest
    from crossfuse.align.config import BuildParams, EngineConfig
    from crossfuse.align.pipeline import pack
    from crossfuse.system import available_cores

    cores = available_cores()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "target.zarr")
        pack(dataset=manifest.load(os.path.join(HERE, "data_manifests", "roadscene-train.json")), out=corpus,
             params=BuildParams(patch=64, stride=200), engine=EngineConfig())
        walls = {}
        t = time.perf_counter()
        for r in range(args.runs):
            _wait([_spawn(corpus, os.path.join(tmp, f"seq{r}"), args, cores)])
        walls["sequential"] = time.perf_counter() - t
        t = time.perf_counter()
        _wait([_spawn(corpus, os.path.join(tmp, f"par{r}"), args, 1) for r in range(args.runs)])
        walls["parallel"] = time.perf_counter() - t
    print(json.dumps({"machine": machine(), "model": args.model, "steps": args.steps, "images": args.images,
                      "runs": args.runs, "cores": cores, "wall_s": {k: round(v, 1) for k, v in walls.items()},
                      "runs_per_hour": {k: round(args.runs * 3600 / v, 1) for k, v in walls.items()},
                      "parallel_over_sequential": round(walls["sequential"] / walls["parallel"], 3)}))


if __name__ == "__main__":
    main()
