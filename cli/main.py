"""``crossfuse``: train the network on corpora, and fuse image pairs."""

from __future__ import annotations

import click

from crossfuse import __version__
from crossfuse.cli.common import progress_factory, reports_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crossfuse")
def main() -> None:
    """CrossFuse infrared-visible image fusion: train on corpora built by `crossfuse-align`, fuse pairs.

    \b
    Typical use:
      crossfuse train --data msrs-to-roadscene.zarr --data roadscene.zarr \\
                      --out runs/rs
      crossfuse fuse --checkpoint runs/rs/checkpoints/latest.pth \\
                     --pairs data_manifests/tno.json --out fused/
      crossfuse eval --fused fused/ --pairs data_manifests/tno.json
    """


def _default(name: str) -> str:
    """``[default: V]`` for a TrainConfig field, as click shows defaults in the other commands."""
    from crossfuse.fusion.config import TrainConfig

    return f"[default: {getattr(TrainConfig(), name)}]"


@main.command()
@click.option("--data", "-d", "data", multiple=True, metavar="STORE",
              help="Corpus store to train on; repeat for several. With --resume: default the run's own.")
@click.option("--weight", "-w", "weights", multiple=True, type=float, metavar="W",
              help="Sampling weight of each --data, in order (default 1 each: every patch once per epoch).")
@click.option("--out", "-o", required=True, metavar="RUN_DIR", help="Run folder: checkpoints, config, logs, curves.")
@click.option("--config", "-c", "config_file", default=None, metavar="FILE",
              help="TOML file of training settings (keys as in RUN_DIR/config.toml); flags override it.")
@click.option("--resume", is_flag=True,
              help="Continue the run in RUN_DIR from its latest checkpoint, with its saved config.toml and "
                   "corpora; flags given override them (--epochs N extends it).")
@click.option("--new-data", is_flag=True, help="With --resume: continue on other --data than the run recorded.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in RUN_DIR (its checkpoints and logs).")
@click.option("--model", "model", default=None, metavar="NAME",
              help="The network to train: crossfuse (default), seafusion, sdnet or densefuse; each brings its "
                   "official training defaults (config keys and flags override them). Also `model = \"NAME\"` "
                   "in --config.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"Total epochs {_default('epochs')}.")
@click.option("--phase1-epochs", type=click.IntRange(min=0), default=None,
              help=f"Epochs of phase I {_default('phase1_epochs')}.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=None,
              help=f"Patches per batch {_default('batch_size')}.")
@click.option("--lr", type=float, default=None, help=f"Adam learning rate {_default('lr')}.")
@click.option("--steps-per-epoch", type=click.IntRange(min=0), default=None,
              help=f"At most this many steps per epoch (0: all) {_default('steps_per_epoch')}.")
@click.option("--seed", type=int, default=None,
              help=f"Seed of initialisation, shuffling and augmentation {_default('seed')}.")
@click.option("--device", default=None, help=f"auto, cpu, cuda, cuda:1 ... {_default('device')}.")
@click.option("--bf16/--no-bf16", default=None,
              help="bfloat16 autocast (GPUs and recent CPUs; not bit-exact) [default: off].")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC memory format: faster, same numbers to 1e-5 [default: on].")
@click.option("--workers", "-j", "loader_workers", type=click.IntRange(min=0), default=None,
              help=f"DataLoader worker processes {_default('loader_workers')}.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@reports_errors(interrupted="interrupted; rerun with --resume to continue from the last finished epoch.")
def train(data, weights, out, config_file, resume, new_data, overwrite, quiet, **overrides):
    """Train a fusion model on one or more corpora: CrossFuse (phase I reconstruction, phase II
    fusion) by default, or --model seafusion, sdnet or densefuse, each with its official loss.

    Under torchrun it trains with DDP, each rank on its own share of every epoch. A checkpoint in
    the official format is written every epoch; --resume continues exactly.
    """
    from crossfuse.fusion import config as cfg_mod
    from crossfuse.fusion.runtime import keep_freed_memory
    from crossfuse.fusion.trainer import train as run_train

    keep_freed_memory()
    if new_data and not resume:
        raise click.UsageError("--new-data only applies with --resume.")
    if resume:
        cfg, data, weights = cfg_mod.for_resume(out, config_file=config_file, overrides=overrides, stores=list(data),
                                                weights=list(weights) or None, new_data=new_data)
    else:
        if not data:
            raise click.UsageError("give at least one --data STORE to train on.")
        cfg = cfg_mod.load(config_file, overrides)
    result = run_train(data=list(data), out=out, cfg=cfg, weights=list(weights or []) or None, resume=resume,
                       overwrite=overwrite, progress=progress_factory(quiet))
    if result.epochs_run == 0:
        click.echo(f"{out} is already finished: {result.epochs_done} epochs ({result.steps} steps), last loss "
                   f"{result.final_loss:.4f}, checkpoint {result.last_checkpoint}. To train longer pass "
                   f"--resume --epochs N with N > {result.epochs_done}.")
        return
    first = result.epochs_done - result.epochs_run + 1
    span = f"epoch {first}" if result.epochs_run == 1 else f"epochs {first}-{result.epochs_done}"
    click.echo(f"trained {span} of {result.epochs_done} ({result.steps} steps in all) in {result.seconds:.1f}s; "
               f"final loss {result.final_loss:.4f}; checkpoint {result.last_checkpoint}")


@main.command()
@click.option("--checkpoint", required=True, metavar="CKPT",
              help="Our checkpoint (it records its model), a run folder (its latest checkpoint), or an official one "
                   "(CrossFuse's; another model's with --model).")
@click.option("--model", "model", default=None, metavar="NAME",
              help="The model of an official checkpoint that is a bare state dict: seafusion, sdnet or densefuse. "
                   "With one of ours it must match the recorded model (or be left out).")
@click.option("--strategy", type=click.Choice(["addition", "l1-norm"]), default=None,
              help="DenseFuse only: how the two encodings are fused [default: the checkpoint's, else addition].")
@click.option("--pairs", required=True, metavar="MANIFEST_OR_DIR", help="Pairs to fuse.")
@click.option("--out", "-o", required=True, metavar="DIR", help="Folder for <id>.png fused images.")
@click.option("--root", default=None, help="Override the manifest's root.")
@click.option("--gray", is_flag=True, help="Write the fused Y alone as a gray PNG (default: colour).")
@click.option("--round", "round_", is_flag=True,
              help="Round the normalised output to 0-255 instead of truncating it as the official test script does.")
@click.option("--tile", type=click.IntRange(min=0), default=0, show_default=True,
              help="Process images in tiles of this size (0: whole image) to bound memory.")
@click.option("--overlap", type=click.IntRange(min=0), default=32, show_default=True, help="Tile overlap in pixels.")
@click.option("--bf16", is_flag=True, help="bfloat16 autocast (faster on recent CPUs and GPUs; not bit-exact).")
@click.option("--channels-last/--no-channels-last", default=True, show_default=True,
              help="NHWC convolutions (faster; same numbers to 1e-5).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda ...")
@click.option("--overwrite", is_flag=True, help="Replace fused images already in DIR.")
@click.option("--resume", is_flag=True, help="Fuse only the pairs DIR lacks (same checkpoint and options).")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable or mismatched pairs, list them, and go on.")
@click.option("--follow-symlinks", is_flag=True,
              help="Read pairs through symlinks that lead outside the dataset's folder (refused by default).")
@click.option("--sheet", default=None, metavar="FILE.png",
              help="Also write a comparison sheet: infrared | visible | fused, one row per pair.")
@click.option("--sheet-pairs", type=click.IntRange(min=1), default=4, show_default=True,
              help="Rows of the --sheet (the first pairs of the manifest).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@reports_errors(interrupted="interrupted; every image written is whole: rerun with --resume to fuse the rest.")
def fuse(checkpoint, model, strategy, pairs, out, root, gray, round_, tile, overlap, bf16, channels_last, device,
         overwrite, resume, skip_bad, follow_symlinks, sheet, sheet_pairs, quiet):
    """Fuse IR/VIS pairs as the model's official test script does. CrossFuse: the visible image's Y,
    Cr and Cb by OpenCV's 8-bit arithmetic, the output min-max normalised and truncated, colour back
    through OpenCV's YCrCb->RGB, pixel for pixel. SeAFusion: its test.py's float colour conversion
    and normalisation; DenseFuse: clamped and truncated; SDNet: min-max scaled and rounded (the
    README's Models section). A gray visible image gives a gray result."""
    from crossfuse import manifest
    from crossfuse.digest import file_sha256
    from crossfuse.errors import CheckpointError
    from crossfuse.fusion.checkpoint import load, resolve
    from crossfuse.fusion.inference import FuseOptions, fuse_dataset
    from crossfuse.fusion.runtime import keep_freed_memory, pick_device

    keep_freed_memory()
    options = FuseOptions(tile=tile, overlap=overlap, bf16=bf16, gray=gray, round=round_, channels_last=channels_last)
    dataset = manifest.load(pairs, root=root, follow_symlinks=follow_symlinks)
    if sheet:
        from crossfuse.fusion.evaluate import check_outputs

        check_outputs([sheet], overwrite=True)  # a sheet under a missing folder is refused before any fusing
    checkpoint = resolve(checkpoint)  # a run folder means its latest checkpoint
    loaded = load(checkpoint, model, **({"strategy": strategy} if strategy else {}))
    if strategy and loaded.model.name != "densefuse":
        raise CheckpointError(f"--strategy applies to densefuse; {checkpoint} is of model {loaded.model.name!r}.")
    result = fuse_dataset(loaded.net, dataset, out, device=pick_device(device), options=options, overwrite=overwrite,
                          resume=resume, skip_bad=skip_bad, checkpoint_sha256=file_sha256(checkpoint),
                          fusion_model=loaded.model, progress=progress_factory(quiet))
    kept = f" ({len(result.kept)} already there)" if result.kept else ""
    click.echo(f"wrote {len(result.written)} fused image(s) to {out}{kept}")
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} bad pair(s):", err=True)
        for bad in result.skipped:
            click.echo(f"  {bad['id']}: {bad['error']}", err=True)
    if sheet:
        from crossfuse.fusion.plots import fused_sheet

        rows = fused_sheet(dataset, out, sheet, pairs=sheet_pairs)
        click.echo(f"wrote the comparison sheet {sheet} ({rows} pairs)")


@main.command("eval")
@click.option("--fused", "-f", required=True, metavar="DIR",
              help="Folder of fused images named <pair id>.png; or a folder of method folders (one per fusion "
                   "method, each with <pair id>.png), scored as a leaderboard.")
@click.option("--pairs", required=True, multiple=True, metavar="MANIFEST_OR_DIR",
              help="Source pairs (repeat for several datasets; each gets a mean row).")
@click.option("--csv", "csv_path", default=None, metavar="FILE",
              help="Write a CSV: per image its dataset, name and metrics (EN, SD, SF, AG, MI, SCD, VIF, Qabf, "
                   "SSIM, CC, PSNR, MSE by default), then a mean row per dataset (a leaderboard: a method column "
                   "first, a row per method and image).")
@click.option("--json", "json_path", default=None, metavar="FILE", help="Write the scores (and a leaderboard) as JSON.")
@click.option("--markdown", "markdown_path", default=None, metavar="FILE",
              help="Write the leaderboard as a Markdown table: per method the mean of each metric and its rank.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --csv, --json or --markdown file.")
@click.option("--skip-missing", is_flag=True,
              help="Score the pairs that have a fused image and name the rest (recorded in --json and --markdown; "
                   "in a leaderboard every method is scored without any pair one of them lacks). Without it a "
                   "missing image is an error naming every one.")
@click.option("--protocol", type=click.Choice(["cddfuse", "vifb", "tang", "tang2022", "all"]), default="cddfuse",
              show_default=True,
              help="cddfuse: the paper's evaluator (12 metrics, gray images). vifb: VIFB's 13 MATLAB metrics "
                   "(AG CE EI EN MI PSNR Qabf Qcb Qcv RMSE SF SSIM SD; colour scored per channel). tang: Tang's "
                   "MATLAB toolbox as it is today (EN SF SD PSNR MSE MI VIF AG CC SCD Qabf; MI in bits, PSNR on "
                   "[0, 1] images), the numbers most papers since 2022 print; tang2022: its 2022 version (SD "
                   "near 9). all: every one, columns prefixed with the protocol's name.")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes [default: one per core].")
@click.option("--root", default=None, metavar="DIR",
              help="Where the source images are, overriding the --pairs manifest's root (one --pairs only), e.g. "
                   "a folder `crossfuse-align datasets fetch` filled.")
@click.option("--follow-symlinks", is_flag=True,
              help="Read pairs through symlinks that lead outside the dataset's folder (refused by default).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@reports_errors(interrupted="interrupted; no score file was written.")
def evaluate(fused, pairs, csv_path, json_path, markdown_path, overwrite, skip_missing, protocol, workers, root,
             follow_symlinks, quiet):
    """Score fused images with the IVIF metrics of a published protocol: by default the paper's
    (EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM, CC, PSNR, MSE), computed exactly as its evaluator
    does; with --protocol vifb VIFB's, exactly as its MATLAB code does; with --protocol tang (or
    tang2022) Tang's toolbox's, exactly as its MATLAB code does today (or did in 2022). --pairs
    takes a manifest or a folder with ir/ and vi/ (or vis/) sub-folders, the toolbox's layout.

    A --fused folder of method folders is a leaderboard: every method is scored on the same
    pairs, and ranked on each metric (MSE, CE, RMSE and Qcv are better smaller, the rest larger).
    """
    import os

    from crossfuse import manifest
    from crossfuse.fusion import evaluate as ev, leaderboard as lb

    if root is not None and len(pairs) != 1:
        raise click.UsageError(f"--root names one dataset's folder; give one --pairs with it (got {len(pairs)}).")
    datasets = [manifest.load(p, root=root, follow_symlinks=follow_symlinks) for p in pairs]
    ev.check_outputs([csv_path, json_path, markdown_path], overwrite=overwrite)
    total = sum(len(m.pairs) for m in datasets)
    found = lb.methods(fused)
    methods = found if found is not None else [(os.path.basename(os.path.normpath(fused)), fused)]
    gone = {name: ev.missing(folder, datasets) for name, folder in methods}  # every file located before any work
    if not skip_missing:
        for name, folder in methods:
            ev.refuse_missing(folder if found is None else f"method {name} ({folder})", gone[name], total)
    skipped = list({(g.dataset, g.name): g for lost in gone.values() for g in lost}.values())
    skip = frozenset((g.dataset, g.name) for g in skipped)
    scored = {name: ev.evaluate(folder, datasets, workers=workers, protocol=protocol, skip=skip,
                                progress=progress_factory(quiet),
                                label="evaluate" if found is None else f"evaluate {name}")
              for name, folder in methods}
    if found is None:
        rows = scored[methods[0][0]]
        click.echo(ev.table(rows))
        if csv_path:
            ev.write_csv(rows, csv_path)
        if json_path:
            ev.write_json(rows, json_path, skipped=skipped)
    else:
        board = lb.board(scored)
        click.echo(lb.text(board))
        if csv_path:
            lb.write_csv(scored, csv_path)
        if json_path:
            lb.write_json(scored, board, json_path, skipped=skipped)
    if markdown_path:
        lb.write_markdown(lb.board(scored), markdown_path, skipped=skipped)
    if skipped:
        click.echo(ev.missing_note(skipped), err=True)


@main.command()
@click.argument("spec_file", metavar="SPEC.toml")
@click.option("--out", "-o", required=True, metavar="DIR",
              help="Experiment folder: corpora, runs, fused images, scores, results.md, plots.")
@click.option("--only", multiple=True, metavar="VARIANT",
              help="Run only this variant (repeat for several); other processes may run the rest in the same DIR.")
@click.option("--device", default="auto", show_default=True, help="Device for fusing: auto, cpu, cuda ...")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Runs made at once, the cores shared out as threads (two runs of one thread each made "
                   "1.1-1.25x the runs an hour of one run on two); also threads for building and processes for "
                   "scoring the baselines [default: one per core; one run at a time on a GPU].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (the stage lines are still printed).")
@reports_errors(interrupted="interrupted; rerun the same command to continue: finished stages are kept.")
def experiment(spec_file, out, only, device, workers, quiet):
    """Run an experiment from SPEC.toml: build each corpus once, train every variant at every seed,
    fuse and score every test set, and write results.csv, results.md and plots to DIR.

    Rerunning the same command continues a killed experiment (finished stages are reused).

    \b
    Recipes:
      recipes/smoke.toml   minutes
      recipes/cpu.toml     about an hour on 2 cores
      recipes/paper.toml   the paper's setting, for a GPU
    """
    from crossfuse.align.config import EngineConfig
    from crossfuse.experiment import runner, spec as spec_mod
    from crossfuse.fusion.runtime import keep_freed_memory

    keep_freed_memory()
    spec = spec_mod.load(spec_file)
    # The run's last log line names the results (printed once, there).
    runner.run(spec, out, only=tuple(only), engine=EngineConfig(workers=workers), device=device, workers=workers,
               log=lambda line: click.echo(line, err=True), progress=progress_factory(quiet))


@main.command()
@click.argument("spec_file", metavar="SPEC.toml")
@click.option("--pilot", required=True, metavar="RESULTS.csv",
              help="Per-image scores of a pilot (an experiment's results.csv) with the baseline and other variants "
                   "at two or more seeds.")
@click.option("--effect", required=True, metavar="E", help="The difference to detect: 2% (of the baseline's mean) or "
                                                           "an absolute 0.01.")
@click.option("--metric", "metrics", multiple=True, metavar="M", help="Metric to plan for (repeat) [default: VIF, Qabf].")
@click.option("--test", "tests", multiple=True, metavar="TEST",
              help="Test set of the spec to plan for (repeat) [default: every one the pilot scored].")
@click.option("--pilot-baseline", default=None, metavar="VARIANT",
              help="The pilot's baseline variant [default: the spec's baseline].")
@click.option("--power", type=click.FloatRange(0.5, 0.99), default=0.8, show_default=True)
@reports_errors()
def plan(spec_file, pilot, effect, metrics, tests, pilot_baseline, power):
    """How many seeds SPEC.toml needs to detect an effect, before anything is trained.

    From the pilot's spread of per-seed mean differences from its baseline (the default question:
    these test images), the fewest seeds that find EFFECT with the given power at 5% per
    comparison, and at 5% / F, what Holm asks of the first of the spec's F comparisons.
    """
    from crossfuse.errors import ConfigError
    from crossfuse.experiment import planning, results, spec as spec_mod

    spec = spec_mod.load(spec_file)
    scores = results.read_csv(pilot)
    found = list(dict.fromkeys(s.dataset for s in scores))
    chosen = list(tests) or [t for t in spec.tests if t in found]
    if not chosen or any(t not in found for t in chosen):
        raise ConfigError(f"{pilot} scores the test sets {found}; the spec's are {list(spec.tests)}: name one both "
                          "have with --test.")
    baselines = {spec.baseline_for(v) for v in spec.variants}
    family = (len(spec.variants) - len(baselines)) * len(results.TABLE_METRICS) * len(spec.tests)
    base = pilot_baseline or spec.baseline
    per_model = [f"{base}.{m}" for m in spec.models if any(s.variant == f"{base}.{m}" for s in scores)]
    try:
        needs = planning.plan(scores, baselines=per_model or [base], tests=chosen,
                              metrics=list(metrics) or ["VIF", "Qabf"], effect=effect, family=family, power=power)
    except ValueError as exc:
        raise ConfigError(f"{pilot}: {exc}.") from None
    click.echo(planning.table(needs, family=family))
    need = [n.seeds_family if spec.correction != "none" else n.seeds for n in needs]
    worst = "more than 1000" if None in need else str(max(need))
    click.echo(f"\n{spec.path}: {family} comparisons ({spec.correction}); {worst} seeds give {power:.0%} power for "
               f"{effect} on {', '.join(sorted({n.metric for n in needs}))} ({', '.join(chosen)}).")


@main.command()
@click.argument("csv_path", metavar="RESULTS.csv")
@click.option("--baseline", required=True, metavar="VARIANT",
              help="The variant every other is judged against (with several models: its name without .MODEL).")
@click.option("--question", type=click.Choice(["images", "population"]), default="images", show_default=True,
              help="images: on these test images (paired t over seeds); population: on images like these "
                   "(crossed bootstrap over seeds and images).")
@click.option("--correction", type=click.Choice(["holm", "bh", "none"]), default="holm", show_default=True,
              help="Multiplicity correction over the family of comparisons.")
@click.option("--published", "published", multiple=True, metavar="TEST=ROW",
              help="Show a published row beside test set TEST (RoadScene, TNO ...).")
@click.option("--out", "-o", default=None, metavar="FILE.md", help="Write results.md here [default: print it].")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@reports_errors()
def analyse(csv_path, baseline, question, correction, published, out, overwrite):
    """Recompute an experiment's results.md from its results.csv alone (the per-image scores that
    every committed write-up carries): verdicts, adjusted p-values, detectable effects, whether
    each effect depends on the model (with several models), means."""
    import os

    from crossfuse import atomic
    from crossfuse.errors import ConfigError, OutputExistsError
    from crossfuse.experiment import results

    if out and os.path.exists(out) and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it, or choose another --out.")
    try:
        scores = results.read_csv(csv_path)
        rows = dict(p.split("=", 1) for p in published)
        from crossfuse.experiment.published import PUBLISHED

        unknown = [r for r in rows.values() if r not in PUBLISHED]
        if unknown:
            raise ValueError(f"--published rows must be one of {', '.join(PUBLISHED)}, got {unknown}")
        design = results.Design.from_scores(scores, baseline=baseline, name=os.path.basename(os.path.dirname(
            os.path.abspath(csv_path))), source=f"recomputed from `{csv_path}`", question=question,
            correction=correction, published=rows)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{csv_path}: {exc}.") from None
    text = results.markdown(design, scores, [])
    if out:
        atomic.write_text(out, text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text)


if __name__ == "__main__":
    main()
