"""Run an experiment: build each corpus once, train each variant and seed, fuse and score every
test set, then gather the results. The stages are the library's own functions; each one reuses
what a previous run of the same spec finished and resumes what it left half done, so a killed
experiment is continued by running the same command again.

The experiment folder::

    spec.toml                          the spec as read (a rerun must use the same one)
    corpora/NAME.zarr                  each corpus, shared by every variant that uses it
    runs/VARIANT/seedN/                a trainer run folder (checkpoints, log, curves)
    runs/VARIANT/seedN/fused/TEST/     fused images of test set TEST
    runs/VARIANT/seedN/scores/TEST.csv their scores (written last: the stage's mark of completion)
    baselines/{mean,max}/...           plain mean and max fusion of the same test images, scored
    results.csv, results.md, plots/    the gathered results (see crossfuse.experiment.results)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import numpy as np
from PIL import Image

from crossfuse import atomic, manifest
from crossfuse.align.config import BuildParams, EngineConfig
from crossfuse.align.lock import lock_path
from crossfuse.align.pipeline import build, build_job, pack, pack_job
from crossfuse.digest import file_sha256
from crossfuse.errors import ConfigError, ManifestError, RunLockedError, StoreError, StoreLockedError
from crossfuse.experiment import plots, results, reuse
from crossfuse.experiment.layout import BASELINES, Layout, write_text
from crossfuse.experiment.spec import Spec, VariantSpec
from crossfuse.fusion import evaluate as ev
from crossfuse.fusion.checkpoint import load as load_checkpoint
from crossfuse.fusion.inference import fuse_dataset, output_path
from crossfuse.fusion.metrics import read_gray
from crossfuse.fusion.runtime import pick_device
from crossfuse.fusion.trainer import train
from crossfuse.progress import Progress, no_progress
from crossfuse.schema import open_corpus
from crossfuse.system import available_cores

def refuse_another_spec(spec: Spec, root: str) -> None:
    """A ConfigError when ``root`` holds an experiment made with another spec (nothing is written)."""
    saved = os.path.join(root, "spec.toml")
    if os.path.exists(saved):
        with open(saved, encoding="utf-8") as fh:
            if fh.read() != spec.text:
                raise ConfigError(f"{root} holds an experiment made with another spec ({saved} differs from "
                                  f"{spec.path}); rerun with that spec to continue it, or choose another --out.")


def claim(spec: Spec, root: str) -> Layout:
    """Make the experiment folder, or check that an existing one was made with this spec."""
    refuse_another_spec(spec, root)
    os.makedirs(root, exist_ok=True)
    saved = os.path.join(root, "spec.toml")
    if not os.path.exists(saved):
        write_text(saved, spec.text)
    return Layout(root=root)


def build_corpus(spec: Spec, name: str, layout: Layout, *, engine: EngineConfig, log: Callable[[str], None],
                 progress: Progress = no_progress, poll: float = 5.0) -> str:
    """The corpus ``name``, built unless a complete one is there (an unfinished build resumes).
    When another process of the same experiment is building it, wait for that build."""
    url = layout.corpus(name)
    c = spec.corpora[name]
    params = BuildParams(patch=spec.patch, stride=spec.stride, chunk=spec.chunk, k=c.k or 1, select=c.select,
                         transform=c.transform, select_seed=c.select_seed)
    while True:
        try:
            _, record = open_corpus(url)
        except (StoreError, FileNotFoundError, ValueError):
            record = None
        if record is not None:
            _refuse_changed_inputs(name, url, record, c, params, engine)
            log(f"corpus {name}: reusing {url}")
            return url
        try:
            log(f"corpus {name}: {'aligning' if c.kind == 'aligned' else 'packing'} {c.manifest}")
            if c.kind == "aligned":
                build(target=manifest.load(c.target), aux=manifest.load(c.manifest), out=url, params=params,
                      engine=engine, progress=progress)
            else:
                pack(dataset=manifest.load(c.manifest), out=url, params=params, engine=engine, progress=progress)
            return url
        except StoreLockedError:
            held = lock_path(url)
            if held is None or not os.path.exists(held):
                raise  # not another build's lock (say, a folder that cannot be written): waiting would not help
            log(f"corpus {name}: another process is building it; waiting")
            time.sleep(poll)


def _refuse_changed_inputs(name: str, url: str, record, c, params: BuildParams, engine: EngineConfig) -> None:
    """A ConfigError when the finished corpus ``url`` was built from other manifest contents or
    settings than the spec's now (a pair dropped from a manifest, say): its runs and scores rest on
    the old data. Corpora from before crossfuse recorded a fingerprint pass."""
    if c.kind == "aligned":
        job = build_job(target=manifest.load(c.target), aux=manifest.load(c.manifest), params=params, engine=engine)
    else:
        job = pack_job(dataset=manifest.load(c.manifest), params=params, engine=engine)
    if record.fingerprint is None or record.fingerprint in (job.fingerprint, *(job.without_skip_bad or ())):
        return
    was = record.inputs or {}
    changed = [f"{k}: {was.get(k)!r} then, {v!r} now" for k, v in job.inputs.items()
               if k != "skip_bad" and was.get(k) != v]
    raise ConfigError(f"corpus {name} ({url}) was built from other inputs than the spec names now "
                      f"({'; '.join(changed) or 'the manifests changed'}). Its runs and scores rest on the old data: "
                      f"remove {url} and the runs that used it to redo them, or restore the manifest.")


def train_variant(spec: Spec, variant: VariantSpec, seed: int, layout: Layout, *,
                  log: Callable[[str], None], progress: Progress = no_progress, poll: float = 5.0) -> str:
    """Train (or finish training) one variant at one seed; returns its final checkpoint (always
    ``latest.pth``: the epoch files hold the same weights but not the same bytes, and the fused
    images record the digest of the file they were made with). When another process of the same
    experiment is training it, wait for that process and then continue (or find it finished)."""
    run = layout.run(variant.name, seed)
    cfg = dataclasses.replace(variant.config, seed=seed)
    while True:
        resume = os.path.exists(os.path.join(run, "config.toml"))
        log(f"train {variant.name} seed {seed}: {'continuing' if resume else 'starting'} in {run}")
        try:
            train(data=[layout.corpus(c) for c in variant.corpora], out=run, cfg=cfg, weights=list(variant.weights),
                  resume=resume, progress=progress)
            return os.path.join(run, "checkpoints", "latest.pth")
        except RunLockedError:
            log(f"train {variant.name} seed {seed}: another process is training it; waiting")
            time.sleep(poll)


def fuse_and_score(spec: Spec, checkpoint: str, fused_dir: Callable[[str], str], scores: Callable[[str], str], *,
                   device: str, workers: int | None, log: Callable[[str], None],
                   progress: Progress = no_progress) -> None:
    """Fuse every test set with ``checkpoint`` (missing images only) and score it, unless scored."""
    loaded = None
    for test in spec.tests.values():
        dataset = manifest.load(test.pairs)
        if os.path.exists(scores(test.name)):
            refuse_stale_scores(scores(test.name), dataset, test.name)
            continue
        if loaded is None:
            loaded = load_checkpoint(checkpoint)
        log(f"fuse {test.name} into {fused_dir(test.name)}")
        fuse_dataset(loaded.net, dataset, fused_dir(test.name), device=pick_device(device), resume=True,
                     checkpoint_sha256=file_sha256(checkpoint), fusion_model=loaded.model, progress=progress)
        _score(fused_dir(test.name), dataset, scores(test.name), workers=workers, progress=progress)


def refuse_stale_scores(path: str, dataset: manifest.Manifest, test: str) -> None:
    """A ConfigError when the score file ``path`` scores other images than test set ``test``'s
    manifest lists now (a pair dropped or added since): it would be reused as if current."""
    import csv

    with open(path, newline="") as fh:
        scored = {row["name"] for row in csv.DictReader(fh) if row.get("name") != "mean"}
    listed = {p.id for p in dataset.pairs}
    if scored != listed:
        gone, new = sorted(scored - listed), sorted(listed - scored)
        raise ConfigError(f"{path} scores other images than test set {test} ({dataset.origin}) lists now"
                          + (f"; no longer listed: {gone[:3]}" if gone else "")
                          + (f"; newly listed: {new[:3]}" if new else "")
                          + f". Remove {path} (and its fused images) to score the test set again, or restore the "
                            "manifest.")


def _score(fused: str, dataset: manifest.Manifest, path: str, *, workers: int | None, progress: Progress) -> None:
    rows = ev.evaluate(fused, [dataset], workers=workers, progress=progress)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ev.write_csv(rows, path)


def baselines(spec: Spec, layout: Layout, *, workers: int | None, log: Callable[[str], None],
              progress: Progress = no_progress) -> None:
    """Mean and max fusion of the gray sources of every test set (as the evaluator reads them), scored."""
    for name, combine in BASELINES.items():
        for test in spec.tests.values():
            path = layout.baseline_scores(name, test.name)
            dataset = manifest.load(test.pairs)
            if os.path.exists(path):
                refuse_stale_scores(path, dataset, test.name)
                continue
            folder = layout.baseline_fused(name, test.name)
            os.makedirs(folder, exist_ok=True)
            log(f"baseline {name} fusion of {test.name}")
            for pair in dataset.pairs:
                target = output_path(folder, pair.id)
                if not os.path.exists(target):
                    fused = combine(read_gray(dataset.source(pair.vis)), read_gray(dataset.source(pair.ir)))
                    with atomic.replacing(target) as tmp:
                        Image.fromarray(fused.astype(np.uint8)).save(tmp, format="PNG")
            _score(folder, dataset, path, workers=workers, progress=progress)


def check_inputs(spec: Spec, variants: list[VariantSpec]) -> None:
    """Every manifest the run will read (the ``variants``' corpora, their targets, every test set)
    loads, and every local image it lists exists: checked before any work, so that a wrong path
    is found in a second, not after hours of building and training. Raises :class:`ConfigError`
    naming the spec, the table and each problem."""
    wanted: dict[str, str] = {}
    for name in dict.fromkeys(c for v in variants for c in v.corpora):
        c = spec.corpora[name]
        wanted.setdefault(c.manifest, f"[corpora.{name.split('@')[0]}]")
        if c.target:
            wanted.setdefault(c.target, f"[corpora.{name.split('@')[0]}] target")
    for test in spec.tests.values():
        wanted.setdefault(test.pairs, f"[tests.{test.name}]")
    problems = []
    for path, where in wanted.items():
        try:
            dataset = manifest.load(path)
        except ManifestError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if "://" in dataset.root:
            continue  # remote images are checked as they are read
        missing = [dataset.url(p) for pair in dataset.pairs for p in (pair.ir, pair.vis)
                   if p and not os.path.isfile(dataset.url(p))]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            problems.append(f"{where}: {path} lists {len(missing)} image(s) that do not exist: "
                            f"{', '.join(missing[:3])}{more}")
    if problems:
        raise ConfigError(f"{spec.path}: nothing was started, because " + "; ".join(problems)
                          + ". Fix the paths in the spec (relative paths are taken from the spec's folder).")


def run(spec: Spec, root: str, *, only: tuple[str, ...] = (), engine: EngineConfig = EngineConfig(),
        device: str = "auto", workers: int | None = None, log: Callable[[str], None] = lambda _: None,
        progress: Progress = no_progress) -> Layout:
    """Run the experiment ``spec`` in folder ``root`` (the variants ``only``, or all), then gather
    whatever results the folder holds (:func:`gather`)."""
    variants = [spec.variant(v) for v in only] if only else list(spec.variants.values())
    refuse_another_spec(spec, root)
    check_inputs(spec, variants)
    layout = claim(spec, root)
    for name in dict.fromkeys(c for v in variants for c in v.corpora):
        build_corpus(spec, name, layout, engine=engine, log=log, progress=progress)
    baselines(spec, layout, workers=workers, log=log, progress=progress)
    jobs = [(variant, seed) for variant in variants for seed in spec.seeds]
    at_once = runs_at_once(workers, device)
    if at_once <= 1 or not jobs:
        for variant, seed in jobs:
            run_one(spec, variant, seed, layout, device=device, workers=workers, log=log, progress=progress)
    else:
        _run_in_parallel(spec, jobs, layout, at_once=at_once, device=device, log=log)
    gather(spec, layout, log=log)
    return layout


def runs_at_once(workers: int | None, device: str) -> int:
    """How many runs to make at once: ``workers`` when given, else one per core on a machine
    without CUDA (two runs of one thread each finished 1.12x (CrossFuse) and 1.25x (SeAFusion)
    the runs an hour of one run on two threads: BENCHMARKS.md, "Runs at once"), else one (the runs
    share the GPU). Each run gets the cores divided by this number as threads, however many runs
    are left: a run's numbers depend a little on its thread count, so a resumed experiment, or one
    variant run alone with the same ``-j``, trains exactly as the full run does."""
    if workers is None:
        import torch

        on_gpu = device != "cpu" and torch.cuda.is_available()
        workers = 1 if on_gpu else available_cores()
    return max(1, workers)


def run_one(spec: Spec, variant: VariantSpec, seed: int, layout: Layout, *, device: str, workers: int | None,
            log: Callable[[str], None], progress: Progress = no_progress) -> None:
    """Train, fuse and score ``variant`` at ``seed`` (reusing an identical run's, or its own
    finished stages)."""
    if _reused(spec, variant, seed, layout, log=log):
        return
    checkpoint = train_variant(spec, variant, seed, layout, log=log, progress=progress)
    fuse_and_score(spec, checkpoint, functools.partial(layout.fused, variant.name, seed),
                   functools.partial(layout.scores, variant.name, seed), device=device, workers=workers,
                   log=log, progress=progress)


def _run_in_parallel(spec: Spec, jobs: list[tuple[VariantSpec, int]], layout: Layout, *, at_once: int, device: str,
                     log: Callable[[str], None]) -> None:
    """The runs ``jobs`` in ``at_once`` worker processes (spawned: torch's thread pool does not
    survive ``fork``), the cores shared out as torch threads, each run scored in its own process;
    their stage lines come back to ``log``. The first failure stops the runs not yet started and
    is raised; runs already going finish (an interrupt stops them too), and a rerun continues
    from there."""
    import multiprocessing

    threads = max(1, available_cores() // at_once)
    log(f"{len(jobs)} run(s), up to {at_once} at once on {threads} thread(s) each")
    context = multiprocessing.get_context("spawn")
    lines = context.Queue()
    pool = ProcessPoolExecutor(max_workers=min(at_once, len(jobs)), mp_context=context, initializer=_worker_init,
                               initargs=(threads, lines))
    followers = _followers(jobs, layout)
    waiting = {(v.name, s) for after in followers.values() for v, s in after}

    def submit(variant: VariantSpec, seed: int):
        return pool.submit(_run_job, spec.path, layout.root, variant.name, seed, device)

    try:
        running = {submit(v, s): (v.name, s) for v, s in jobs if (v.name, s) not in waiting}
        while running:
            done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            _relay(lines, log)
            for future in done:
                job = running.pop(future)
                future.result()
                for variant, seed in followers.get(job, ()):  # its identical twins: now reused, not retrained
                    running[submit(variant, seed)] = (variant.name, seed)
    except BaseException as exc:
        if not isinstance(exc, Exception):  # interrupted: stop the runs now (a rerun resumes them)
            for process in list(getattr(pool, "_processes", {}).values()):  # Python 3.14: terminate_workers()
                process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _relay(lines, log)


def _followers(jobs: list[tuple[VariantSpec, int]], layout: Layout) -> dict[tuple[str, int], list[tuple[VariantSpec, int]]]:
    """For each run, the later runs that train on exactly what it does (:func:`reuse.inputs_digest`):
    they start only after it has finished, so that they reuse it instead of training the same
    network at the same time."""
    first: dict[str, tuple[str, int]] = {}
    followers: dict[tuple[str, int], list[tuple[VariantSpec, int]]] = {}
    for variant, seed in jobs:
        digest = reuse.inputs_digest(variant, seed, layout)
        if digest is None:
            continue
        if digest in first:
            followers.setdefault(first[digest], []).append((variant, seed))
        else:
            first[digest] = (variant.name, seed)
    return followers


def _relay(lines, log: Callable[[str], None]) -> None:
    import queue

    while True:
        try:
            log(lines.get_nowait())
        except queue.Empty:
            return


_lines = None  # a worker process's queue of stage lines for the parent


def _worker_init(threads: int, lines) -> None:
    import torch

    from crossfuse.fusion.runtime import keep_freed_memory

    global _lines
    _lines = lines
    torch.set_num_threads(threads)
    keep_freed_memory()


def _run_job(spec_path: str, root: str, variant: str, seed: int, device: str) -> None:
    """One run in a worker process: the spec read again from its file (the parent checked that the
    folder holds this spec)."""
    from crossfuse.experiment import spec as spec_mod

    spec = spec_mod.load(spec_path)
    refuse_another_spec(spec, root)  # the file changed since the experiment began
    run_one(spec, spec.variant(variant), seed, Layout(root=root), device=device, workers=1, log=_lines.put)


def _reused(spec: Spec, variant: VariantSpec, seed: int, layout: Layout, *, log: Callable[[str], None]) -> bool:
    """Whether the run of ``variant`` at ``seed`` is (now) a reuse of an identical earlier run
    (:mod:`~crossfuse.experiment.reuse`) rather than one to train."""
    note = os.path.join(layout.run(variant.name, seed), reuse.NOTE)
    if os.path.exists(note):
        reuse.read_note(note)  # a damaged note is named, not a JSON traceback
        if all(os.path.exists(layout.scores(variant.name, seed, t)) for t in spec.tests):
            return True
        os.remove(note)  # its scores were deleted since: reuse (or train) it again, below
    if os.path.exists(os.path.join(layout.run(variant.name, seed), "config.toml")):
        return False  # its own training has begun: let it finish
    found = reuse.twin(spec, variant, seed, layout)
    if found is None:
        return False
    source, digest = found
    log(f"train {variant.name} seed {seed}: trains on exactly what {source} does (the same patches, weights, "
        f"settings and seed); reusing {source}'s fused images and scores")
    reuse.reuse(spec, variant, seed, layout, source, digest)
    return True


def gather(spec: Spec, layout: Layout, *, log: Callable[[str], None] = lambda _: None) -> tuple[str, str]:
    """Write results.csv, results.md and the plots of what ``layout`` holds; returns the two paths."""
    scores, missing = results.collect(spec, layout)
    csv_path = os.path.join(layout.root, "results.csv")
    md_path = os.path.join(layout.root, "results.md")
    results.write_csv(scores, csv_path)
    write_text(md_path, results.markdown(spec, scores, missing) + reuse.summary(spec, layout))
    written = plots.draw(spec, layout, scores)
    log(f"results: {md_path}, {csv_path}, {len(written)} plot(s) in {os.path.join(layout.root, 'plots')}"
        + (f"; {len(missing)} stage(s) not yet scored" if missing else ""))
    return csv_path, md_path
