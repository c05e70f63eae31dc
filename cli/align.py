"""``crossfuse-align``: build, pack, inspect and verify corpus stores."""

from __future__ import annotations

import json

import click

from crossfuse import __version__
from crossfuse.align.config import (DESCRIPTORS, INDEXES, SELECTIONS, TRANSFORMS, BuildParams, EngineConfig,
                                    selection_words)
from crossfuse.cli.common import progress_factory, quiet_client_logging, reports_errors

#: The defaults of every build option live in BuildParams; the options show them.
_DEFAULT = BuildParams()

RESUME_HINT = "interrupted; rerun the same command to resume: scanned batches and written chunks are kept."
_ENGINE_HELP = "Dask scheduler address (tcp://host:8786); default: an in-process LocalCluster."


def _engine_options(func):
    for option in reversed([
        click.option("--patch", "-p", type=click.IntRange(min=1), default=_DEFAULT.patch, show_default=True,
                     help="Patch size P in pixels (square patches)."),
        click.option("--stride", "-s", type=click.IntRange(min=1), default=_DEFAULT.stride, show_default=True,
                     help="Stride S between patch corners, in pixels."),
        click.option("--chunk", type=click.IntRange(min=1), default=_DEFAULT.chunk, show_default=True,
                     help="Patches per Zarr chunk along N (the training loader reads whole chunks)."),
        click.option("--drop-low-contrast", is_flag=True,
                     help="Leave out the patches CDDFuse's data preparation drops: (p90 - p10) / p90 < 0.1 of the "
                          "visible Y or the infrared (a build's target keeps all its patches). Recorded."),
        click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
                     help="Worker threads of the local engine [default: one per core]."),
        click.option("--scheduler", default=None, metavar="ADDR", help=_ENGINE_HELP),
        click.option("--worker-timeout", type=click.FloatRange(min=1), default=EngineConfig().worker_timeout,
                     show_default=True, metavar="SECONDS",
                     help="Fail (resumably) when the cluster has had no worker for this long, instead of waiting."),
        click.option("--overwrite", is_flag=True, help="Replace an existing corpus at --out."),
        click.option("--break-lock", is_flag=True,
                     help="Take over the store's lock (STORE.lock) although its holder cannot be checked (another "
                          "host); only when that build is surely gone."),
        click.option("--skip-bad", is_flag=True,
                     help="Record unreadable, mismatched or unpaired images in the store and go on."),
        click.option("--follow-symlinks", is_flag=True,
                     help="Read images through symlinks that lead outside a dataset's root (refused by default; "
                          "recorded in the store)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
    ]):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crossfuse-align")
def main() -> None:
    """Turn IR/VIS datasets into Zarr corpora of aligned patches (CrossFuse, Top-K vision alignment).

    \b
    Typical use:
      crossfuse-align build --target data_manifests/roadscene.json \\
                            --aux data_manifests/msrs.json \\
                            --out msrs-to-roadscene.zarr -k 800
      crossfuse-align inspect msrs-to-roadscene.zarr
      crossfuse-align verify msrs-to-roadscene.zarr

    A dataset is a manifest (.json) or a folder with ir/ + vis/ sub-folders; paths may be fsspec
    URLs. An interrupted build resumes when rerun with the same arguments.
    """


@main.command()
@click.option("--target", "-t", required=True, metavar="MANIFEST",
              help="Dataset whose visible colour statistics the corpus should match.")
@click.option("--aux", "-a", required=True, metavar="MANIFEST",
              help="Auxiliary paired dataset the patches are taken from.")
@click.option("--out", "-o", required=True, metavar="STORE", help="Output Zarr store (path or URL).")
@click.option("-k", "--k", "k", type=click.IntRange(min=1), default=_DEFAULT.k, show_default=True,
              help="Number of auxiliary patches to retrieve (Top-K).")
@click.option("--index", type=click.Choice(INDEXES), default=_DEFAULT.index, show_default=True,
              help="FAISS index: exact 'flat', or approximate 'ivf' for very large auxiliary sets.")
@click.option("--nlist", type=click.IntRange(min=1), default=_DEFAULT.nlist, show_default=True, help="IVF lists.")
@click.option("--nprobe", type=click.IntRange(min=1), default=_DEFAULT.nprobe, show_default=True, help="IVF lists probed.")
@click.option("--select", type=click.Choice(SELECTIONS), default=_DEFAULT.select, show_default=True,
              help="How the K patches are chosen. topk: the K closest to the target's mean colour (the paper's). "
                   "random: K drawn uniformly from the pool (--select-seed), as many patches with no alignment: "
                   "the control that tells alignment from data volume. match: K whose distribution follows the "
                   "target's (each target patch takes its nearest pool patches, in proportion).")
@click.option("--descriptor", type=click.Choice(DESCRIPTORS), default=_DEFAULT.descriptor, show_default=True,
              help="What topk compares: rgb, each patch's channel means (the paper's); luma, its luma mean and "
                   "standard deviation, each scaled by its spread over the target's patches.")
@click.option("--select-seed", type=click.IntRange(min=0), default=_DEFAULT.select_seed, show_default=True,
              help="Seed of --select random (recorded).")
@click.option("--transform", type=click.Choice(TRANSFORMS), default=_DEFAULT.transform, show_default=True,
              help="What is done to the chosen patches. gamma: per-channel gamma matching the target's mean (the "
                   "paper's). none: nothing (what the released script actually trains on). cdf: each channel's pixel "
                   "histogram matched to the target's (the monotone table closest in W1), for targets whose "
                   "colours spread wider than one mean describes. The table is recorded and drawn by `report`.")
@click.option("--target-root", default=None, help="Override the target manifest's root.")
@click.option("--aux-root", default=None, help="Override the auxiliary manifest's root.")
@click.option("--low-scratch", is_flag=True,
              help="Keep no candidate pixels while scanning and read the pairs holding selected patches again: "
                   "scratch disk is then exactly K raw patches, never more, at the cost of that second read. "
                   "By default only patches that can still be selected keep their pixels (about K of them). "
                   "Same corpus either way.")
@_engine_options
@reports_errors(interrupted=RESUME_HINT)
def build(target, aux, out, k, index, nlist, nprobe, select, descriptor, select_seed, transform, target_root, aux_root, low_scratch, patch, stride, chunk,
          drop_low_contrast, workers, scheduler, worker_timeout, overwrite, break_lock, skip_bad, follow_symlinks, quiet):
    """Select the K auxiliary patches closest to the target's colour statistics, gamma-correct
    them per channel to match, and write them to a corpus store."""
    from crossfuse import manifest
    from crossfuse.align import BuildParams, EngineConfig, build as run_build

    quiet_client_logging()
    params = BuildParams(patch=patch, stride=stride, k=k, index=index, nlist=nlist, nprobe=nprobe, chunk=chunk,
                         drop_low_contrast=drop_low_contrast, select=select, select_seed=select_seed,
                         transform=transform, descriptor=descriptor)
    summary = run_build(target=manifest.load(target, root=target_root, follow_symlinks=follow_symlinks),
                        aux=manifest.load(aux, root=aux_root, follow_symlinks=follow_symlinks),
                        out=out, params=params,
                        engine=EngineConfig(workers=workers, scheduler=scheduler, worker_timeout=worker_timeout,
                                            low_scratch=low_scratch),
                        overwrite=overwrite, skip_bad=skip_bad, break_lock=break_lock,
                        progress=progress_factory(quiet))
    _print_summary(summary)


@main.command()
@click.option("--manifest", "-m", "dataset", required=True, metavar="MANIFEST", help="Dataset to pack.")
@click.option("--out", "-o", required=True, metavar="STORE", help="Output Zarr store (path or URL).")
@click.option("--root", default=None, help="Override the manifest's root.")
@_engine_options
@reports_errors(interrupted=RESUME_HINT)
def pack(dataset, out, root, patch, stride, chunk, drop_low_contrast, workers, scheduler, worker_timeout, overwrite, break_lock, skip_bad,
         follow_symlinks, quiet):
    """Write every patch of one dataset to a corpus as it is (e.g. the target's own training split)."""
    from crossfuse import manifest
    from crossfuse.align import BuildParams, EngineConfig, pack as run_pack

    quiet_client_logging()
    summary = run_pack(dataset=manifest.load(dataset, root=root, follow_symlinks=follow_symlinks), out=out,
                       params=BuildParams(patch=patch, stride=stride, chunk=chunk, drop_low_contrast=drop_low_contrast),
                       engine=EngineConfig(workers=workers, scheduler=scheduler, worker_timeout=worker_timeout),
                       overwrite=overwrite,
                       skip_bad=skip_bad, break_lock=break_lock, progress=progress_factory(quiet))
    _print_summary(summary)


def _rgb(values) -> str:
    return "  ".join(f"{c} {v:7.2f}" for c, v in zip("RGB", values))


def _alignment_lines(record) -> list[str]:
    """The statistics an aligned corpus is about, as printed by build and inspect."""
    word = record.params.transform or "gamma"  # gamma, none or cdf
    lines = [f"  target means   {_rgb(record.target.means)}"]
    if word == "none":  # nothing was done: one line, not "before none" / "after none"
        lines.append(f"  selection      {_rgb(record.means_before)}")
    else:
        lines += [f"  {'before ' + word:<15}{_rgb(record.means_before)}",
                  f"  {'after ' + word:<15}{_rgb(record.means_after)}"]
    if word == "gamma":
        lines.append("  gamma          " + "  ".join(f"{ch} {g:7.4f}" for ch, g in zip("RGB", record.gamma)))
        unreachable = [ch for ch, ok in zip("RGB", record.gamma_reachable or (True,) * 3) if not ok]
        if unreachable:
            lines.append(f"  unreachable    {', '.join(unreachable)}: no gamma brings the selection's mean to the "
                         "target's (an all-black channel stays black); the gamma shown is the search's bound, and "
                         "those channels are left as good as the lookup allows, not matched")
    return lines + _w1_lines(record)


def _w1_lines(record) -> list[str]:
    """W1 from the target's patch-mean distribution, per channel (absent in older corpora)."""
    if record.w1 is None:
        return []
    w = record.w1
    word = record.params.transform or "gamma"
    return ["  W1 to target (distribution of patch means, 0-255 units, lower is closer):",
            f"    whole pool     {_rgb(w.pool)}",
            f"    selection      {_rgb(w.before)}"] + (
        [f"    {'after ' + word:<15}{_rgb(w.after)}"] if word != "none" else []) + _luma_lines(record)


def _luma_lines(record) -> list[str]:
    """W1 of the pixel luma the network sees (absent in older corpora)."""
    if record.w1_luma is None:
        return []
    w = record.w1_luma
    after = f", after the transform {w.after:.2f}" if (record.params.transform or "gamma") != "none" else ""
    return [f"  W1 of pixel luma Y (what the network sees): pool {w.pool:.2f}, selection {w.before:.2f}{after}"]


def _skipped_line(record, label: str) -> list[str]:
    if not record.skipped:
        return []
    ids = [p.id for p in record.skipped]
    return [f"  {label} {len(ids)} bad pair(s): " + ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
            + "  (listed in the store attributes)"]


def _print_summary(s) -> None:
    record, c = s.record, s.record.counts
    lines = [f"{'resumed and completed' if s.resumed else 'wrote'} {record.kind} corpus {s.store}"]
    if record.kind == "aligned":
        lines += [f"  target     {c.target_pairs:>6} pairs  {c.target_patches:>8} patches",
                  f"  auxiliary  {c.aux_pairs:>6} pairs  {c.aux_patches:>8} patches scanned",
                  f"  selected   {c.patches:>8} patches ({selection_words(record.params)})",
                  *_alignment_lines(record)]
        if record.ivf_recall is not None:
            lines.append(f"  IVF recall@K against exact search: {record.ivf_recall:.4f}")
        if s.scratch:
            f = s.scratch
            lines.append(f"  scratch        at most {f['scratch_patches_peak']} candidate patches held with pixels "
                         f"({f['compactions']} blob(s) rewritten to drop dead ones); "
                         f"{f['pairs_read_twice']} pair(s) read twice")
    else:
        lines += [f"  packed     {c.aux_pairs:>6} pairs  {c.patches:>8} patches",
                  f"  means          {_rgb(record.means_before)}"]
    if c.low_contrast is not None:
        lines.append(f"  low contrast {c.low_contrast:>8} auxiliary patches left out (--drop-low-contrast)")
    lines += _skipped_line(record, "skipped")
    lines.append("  time           " + "  ".join(f"{k} {v:.2f}s" for k, v in s.seconds.items()))
    click.echo("\n".join(lines))


@main.command()
@click.argument("store")
@click.option("--out", "-o", required=True, metavar="DIR", help="Folder for index.html and its PNG figures.")
@click.option("--root", default=None,
              help="Where the source images are, if not at the recorded root (for the 'before' patches).")
@click.option("--overwrite", is_flag=True,
              help="Write into a DIR that holds files an earlier report did not write (the report's own file names "
                   "are replaced; other files stay).")
@reports_errors
def report(store, out, root, overwrite):
    """Write an HTML report of what a corpus' alignment did: W1 per channel, distributions and point
    clouds of patch means (target, pool, selection before and after gamma), the gamma curves and a
    grid of selected patches before | after. Open DIR/index.html in a browser."""
    from crossfuse.align.report import write

    result = write(store, out, root=root, overwrite=overwrite)
    click.echo(f"wrote {result.index} with {len(result.figures)} figures")


@main.command("export")
@click.argument("store")
@click.option("--format", "fmt", type=click.Choice(["h5"]), default="h5", show_default=True,
              help="h5: the layout CDDFuse's dataprocessing.py and CrossFuse's release write (groups ir_patchs and "
                   "vis_patchs, float32 (1, P, P) in [0, 1], visible as Y).")
@click.option("--out", "-o", required=True, metavar="FILE", help="The file to write (.h5).")
@click.option("--overwrite", is_flag=True, help="Replace an existing FILE.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@reports_errors
def export_corpus(store, fmt, out, overwrite, quiet):
    """Write a corpus in another training code's format, so that its own reader (CDDFuse's
    H5Dataset, say) trains on it: row i becomes key "i". Needs h5py (pip install 'crossfuse[h5]')."""
    from crossfuse.align import h5

    result = h5.export(store, out, overwrite=overwrite, progress=progress_factory(quiet))
    click.echo(f"wrote {result.path}: {result.patches} patches of {result.patch}x{result.patch} "
               f"(groups {h5.IR_GROUP}, {h5.VIS_GROUP}; visible as Y)")


@main.command("import")
@click.argument("h5file", metavar="FILE.h5")
@click.option("--out", "-o", required=True, metavar="STORE", help="The corpus to write (.zarr).")
@click.option("--chunk", type=click.IntRange(min=1), default=_DEFAULT.chunk, show_default=True,
              help="Patches per Zarr chunk.")
@click.option("--overwrite", is_flag=True, help="Replace an existing corpus at STORE.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@reports_errors
def import_corpus(h5file, out, chunk, overwrite, quiet):
    """Make a packed corpus of an H5 file of training patches in CDDFuse's layout (e.g. an
    existing MSRS_train_imgsize_128_stride_200.h5). The visible Y becomes a grey patch
    (R = G = B = round(255 Y)); the record names the file and its sha256. Needs h5py."""
    from crossfuse.align import h5

    record = h5.import_h5(h5file, out, chunk=chunk, overwrite=overwrite, progress=progress_factory(quiet))
    p = record.params.patch
    click.echo(f"wrote packed corpus {out}: {record.counts.patches} patches of {p}x{p} from {h5file} "
               "(visible stored as grey from Y)")


@main.command("manifest")
@click.argument("dataset")
@click.option("--out", "-o", required=True, metavar="FILE", help="Manifest file to write (.json).")
@click.option("--name", default=None, help="Dataset name [default: the folder's name].")
@click.option("--root", default=None,
              help="Root to record [default: the dataset's location, relative to FILE when both are local].")
@click.option("--overwrite", is_flag=True, help="Replace an existing FILE.")
@click.option("--follow-symlinks", is_flag=True,
              help="Read pairs through symlinks that lead outside the dataset's folder (refused by default).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@reports_errors
def make_manifest(dataset, out, name, root, overwrite, follow_symlinks, quiet):
    """Write a manifest (pairs and their sha256) for a dataset folder or another manifest."""
    from crossfuse import manifest

    m = manifest.save(dataset, out, name=name, root=root, overwrite=overwrite, follow_symlinks=follow_symlinks,
                      progress=progress_factory(quiet))
    click.echo(f"wrote {out}: {len(m.pairs)} pairs of {m.name}, root {m.root}")


@main.command()
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the full description as JSON.")
@reports_errors
def inspect(store, as_json):
    """Show what a corpus holds and how it was made."""
    from crossfuse.align import describe

    d = describe(store)
    if as_json:
        click.echo(json.dumps(d.to_json(), indent=2))
        return
    r = d.record
    p, c = r.params, r.counts
    stride = f"stride {p.stride}" if p.stride else "stride not known: imported"
    lines = [f"{store}: {r.kind} corpus, schema {r.schema}, made {r.created} by crossfuse {r.tool_version}",
             f"  patches   {c.patches} of {p.patch}x{p.patch} ({stride}) from {len(r.sources)} "
             f"source {'file' if r.inputs and 'import' in r.inputs else 'pairs'} of {r.aux.name}"]
    if c.low_contrast is not None:
        lines.append(f"  low contrast {c.low_contrast} auxiliary patches left out (--drop-low-contrast)")
    if r.kind == "aligned":
        index = {"flat": "an exact flat", "ivf": "an approximate IVF"}.get(p.index, f"a {p.index}")
        how = (f"Top-{p.k} by {p.metric} over {index} FAISS index" if p.select == "topk" else
               f"{p.k} patches by --select {p.select} (no Top-K; every pool patch's statistics kept)")
        lines += [f"  retrieval {how}, target {r.target.name} ({r.target.patches} patches)",
                  f"  selection {selection_words(p)}", *_alignment_lines(r)]
    else:
        lines.append(f"  means          {_rgb(r.means_before)}")
    lines += _skipped_line(r, "skipped  ")
    for name, a in d.arrays.items():
        lines.append(f"  {name:<9} {a.dtype:<8} {str(a.shape):<22} chunks {a.chunks} {'+'.join(a.codecs) or 'raw'}")
    click.echo("\n".join(lines))


@main.command()
@click.argument("store")
@click.option("--no-sources", is_flag=True, help="Skip checking the source images' sha256.")
@click.option("--root", default=None, help="Where the source images live, if not at the recorded root.")
@reports_errors
def verify(store, no_sources, root):
    """Check a corpus: schema, completeness, shapes, every chunk readable, recorded statistics,
    and the sha256 of its source images when they are reachable. Exit status 1 on any problem."""
    from crossfuse.align import verify as run_verify

    r = run_verify(store, check_sources=not no_sources, root=root)
    sources = ("source files not checked (--no-sources)" if no_sources else
               f"{r.sources_checked} source files checked" + (f", {r.sources_unreachable} unreachable"
                                                              if r.sources_unreachable else ""))
    click.echo(f"{store}: {r.patches} patches, {r.chunks_read} chunks read back, {sources}")
    for note in r.notes:
        click.echo(f"  note: {note}")
    for problem in r.problems:
        click.echo(f"  PROBLEM: {problem}", err=True)
    if not r.ok:
        raise SystemExit(1)
    click.echo("  OK")




@main.group()
def datasets():
    """The public datasets the bundled manifests list: where each comes from, and fetching it.

    \b
      crossfuse-align datasets list
      crossfuse-align datasets fetch roadscene --to data/RoadScene
      crossfuse-align build --target-root data/RoadScene \\
          --target data_manifests/roadscene-train.json ...
    """


@datasets.command("list")
@reports_errors
def datasets_list():
    """Each known dataset, its source, and the bundled manifests that list it."""
    from crossfuse.align.datasets import SOURCES, users

    listed = users()
    for name, source in SOURCES.items():
        where = f"{source.repo} @ {source.commit[:7]}" if source.repo else "by hand (fetch prints how)"
        click.echo(f"{name:<10} {where:<48} manifests: {', '.join(listed.get(name, [])) or '-'}")


@datasets.command("fetch")
@click.argument("name", metavar="NAME")
@click.option("--to", "to", required=True, metavar="DIR", help="Folder to put the files in (the manifest's layout).")
@click.option("--from", "base", default=None, metavar="URL|DIR",
              help="A mirror laid out as the manifest (<URL>/ir/..., <URL>/vis/...) instead of the dataset's source.")
@click.option("--timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for each file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@reports_errors(interrupted="interrupted; run the same command again: the files already checked are kept.")
def datasets_fetch(name, to, base, timeout, quiet):
    """Fetch the files the manifest NAME lists into DIR, each checked against its recorded sha256.

    NAME is a bundled manifest (roadscene, roadscene-train, tno-test, msrs, vifb, m3fd; see
    `datasets list`) or a manifest file. Files already in DIR with the right digest are kept, so a
    rerun resumes. Then point the manifest at DIR: --root DIR (pack), --target-root DIR or
    --aux-root DIR (build).
    """
    from crossfuse.align.datasets import bundled, fetch, source_of

    dataset = bundled(name)
    result = fetch(dataset, to, base=base, timeout=timeout, progress=progress_factory(quiet))
    if result.missing:
        _, source = source_of(dataset)
        raise click.ClickException(f"{len(result.missing)} file(s) of {dataset.origin} are not in {to} yet (first: "
                                   f"{result.missing[0]}). {source.manual}")
    click.echo(f"{to}: {result.fetched} file(s) fetched, {result.kept} already there, every one checked against "
               f"{dataset.origin}. Use it with --root {to} (pack), or --target-root / --aux-root {to} (build).")


if __name__ == "__main__":
    main()
