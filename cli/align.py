"""``crossfuse-align``: build, pack, inspect and verify corpus stores."""

from __future__ import annotations

import json

import click

from crossfuse import __version__
from crossfuse.cli.common import progress_factory, reports_errors

RESUME_HINT = "interrupted; rerun the same command to resume: scanned batches and written chunks are kept."
_ENGINE_HELP = "Dask scheduler address (tcp://host:8786); default: an in-process LocalCluster."


def _engine_options(func):
    for option in reversed([
        click.option("--patch", "-p", type=click.IntRange(min=1), default=64, show_default=True,
                     help="Patch size P in pixels (square patches)."),
        click.option("--stride", "-s", type=click.IntRange(min=1), default=200, show_default=True,
                     help="Stride S between patch corners, in pixels."),
        click.option("--chunk", type=click.IntRange(min=1), default=256, show_default=True,
                     help="Patches per Zarr chunk along N (the training loader reads whole chunks)."),
        click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
                     help="Worker threads of the local engine [default: one per core]."),
        click.option("--scheduler", default=None, metavar="ADDR", help=_ENGINE_HELP),
        click.option("--overwrite", is_flag=True, help="Replace an existing corpus at --out."),
        click.option("--skip-bad", is_flag=True,
                     help="Record unreadable, mismatched or unpaired images in the store and go on."),
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
                            --aux data_manifests/msrs.json --out msrs-to-roadscene.zarr -k 800
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
@click.option("-k", "k", type=click.IntRange(min=1), default=800, show_default=True,
              help="Number of auxiliary patches to retrieve (Top-K).")
@click.option("--index", type=click.Choice(["flat", "ivf"]), default="flat", show_default=True,
              help="FAISS index: exact 'flat', or approximate 'ivf' for very large auxiliary sets.")
@click.option("--nlist", type=click.IntRange(min=1), default=64, show_default=True, help="IVF lists.")
@click.option("--nprobe", type=click.IntRange(min=1), default=8, show_default=True, help="IVF lists probed.")
@click.option("--target-root", default=None, help="Override the target manifest's root.")
@click.option("--aux-root", default=None, help="Override the auxiliary manifest's root.")
@_engine_options
@reports_errors(interrupted=RESUME_HINT)
def build(target, aux, out, k, index, nlist, nprobe, target_root, aux_root, patch, stride, chunk, workers,
          scheduler, overwrite, skip_bad, quiet):
    """Select the K auxiliary patches closest to the target's colour statistics, gamma-correct
    them per channel to match, and write them to a corpus store."""
    from crossfuse import manifest
    from crossfuse.align import BuildParams, EngineConfig, build as run_build

    params = BuildParams(patch=patch, stride=stride, k=k, index=index, nlist=nlist, nprobe=nprobe, chunk=chunk)
    summary = run_build(target=manifest.load(target, root=target_root), aux=manifest.load(aux, root=aux_root),
                        out=out, params=params, engine=EngineConfig(workers=workers, scheduler=scheduler),
                        overwrite=overwrite, skip_bad=skip_bad, progress=progress_factory(quiet))
    _print_summary(summary)


@main.command()
@click.option("--manifest", "-m", "dataset", required=True, metavar="MANIFEST", help="Dataset to pack.")
@click.option("--out", "-o", required=True, metavar="STORE", help="Output Zarr store (path or URL).")
@click.option("--root", default=None, help="Override the manifest's root.")
@_engine_options
@reports_errors(interrupted=RESUME_HINT)
def pack(dataset, out, root, patch, stride, chunk, workers, scheduler, overwrite, skip_bad, quiet):
    """Write every patch of one dataset to a corpus as it is (e.g. the target's own training split)."""
    from crossfuse import manifest
    from crossfuse.align import BuildParams, EngineConfig, pack as run_pack

    summary = run_pack(dataset=manifest.load(dataset, root=root), out=out,
                       params=BuildParams(patch=patch, stride=stride, chunk=chunk),
                       engine=EngineConfig(workers=workers, scheduler=scheduler), overwrite=overwrite,
                       skip_bad=skip_bad, progress=progress_factory(quiet))
    _print_summary(summary)


def _rgb(values) -> str:
    return "  ".join(f"{c} {v:7.2f}" for c, v in zip("RGB", values))


def _alignment_lines(target_means, before, after, gamma) -> list[str]:
    """The statistics an aligned corpus is about, as printed by build and inspect."""
    return [f"  target means   {_rgb(target_means)}",
            f"  before gamma   {_rgb(before)}",
            f"  after gamma    {_rgb(after)}",
            "  gamma          " + "  ".join(f"{ch} {g:7.4f}" for ch, g in zip("RGB", gamma))]


def _print_summary(s) -> None:
    c = s.counts
    lines = [f"{'resumed and completed' if s.resumed else 'wrote'} {s.kind} corpus {s.store}"]
    if s.kind == "aligned":
        lines += [f"  target     {c['target_pairs']:>6} pairs  {c['target_patches']:>8} patches",
                  f"  auxiliary  {c['aux_pairs']:>6} pairs  {c['aux_patches']:>8} patches scanned",
                  f"  selected   {c['patches']:>8} patches (Top-K by L1 distance of RGB means)",
                  *_alignment_lines(s.target_means, s.means_before, s.means_after, s.gamma)]
        if s.recall is not None:
            lines.append(f"  IVF recall@K against exact search: {s.recall:.4f}")
    else:
        lines += [f"  packed     {c['aux_pairs']:>6} pairs  {c['patches']:>8} patches",
                  f"  means          {_rgb(s.means_before)}"]
    if s.skipped:
        lines.append(f"  skipped {len(s.skipped)} bad pair(s): " + ", ".join(p["id"] for p in s.skipped[:8])
                     + (" ..." if len(s.skipped) > 8 else "") + "  (listed in the store attributes)")
    lines.append("  time           " + "  ".join(f"{k} {v:.2f}s" for k, v in s.seconds.items()))
    click.echo("\n".join(lines))


@main.command("manifest")
@click.argument("dataset")
@click.option("--out", "-o", required=True, metavar="FILE", help="Manifest file to write (.json).")
@click.option("--name", default=None, help="Dataset name [default: the folder's name].")
@click.option("--root", default=None,
              help="Root to record [default: the dataset's location, relative to FILE when both are local].")
@click.option("--overwrite", is_flag=True, help="Replace an existing FILE.")
@reports_errors
def make_manifest(dataset, out, name, root, overwrite):
    """Write a manifest (pairs and their sha256) for a dataset folder or another manifest."""
    import os

    from crossfuse import manifest
    from crossfuse.errors import StoreExistsError

    if os.path.exists(out) and not overwrite:
        raise StoreExistsError(f"{out} exists; pass --overwrite to replace it.")
    m = manifest.with_checksums(manifest.load(dataset))
    if root is None:
        root = m.root
        if "://" not in root and "://" not in out:
            root = os.path.relpath(os.path.abspath(root), os.path.dirname(os.path.abspath(out)))
    manifest.write(manifest.relocate(m, root=root, name=name), out)
    click.echo(f"wrote {out}: {len(m.pairs)} pairs of {name or m.name}, root {root}")


@main.command()
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the full description as JSON.")
@reports_errors
def inspect(store, as_json):
    """Show what a corpus holds and how it was made."""
    from crossfuse.align import describe

    d = describe(store)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    p, c = d["params"], d["counts"]
    lines = [f"{store}: {d['kind']} corpus, schema {d['schema']}, made {d.get('created')} by crossfuse "
             f"{d.get('tool_version')}",
             f"  patches   {c['patches']} of {p['patch']}x{p['patch']} (stride {p['stride']}) from {len(d['sources'])} "
             f"source pairs of {d['aux']['name']}"]
    if d["kind"] == "aligned":
        index = {"flat": "an exact flat", "ivf": "an approximate IVF"}.get(p["index"], f"a {p['index']}")
        lines += [f"  retrieval Top-{p['k']} by {p['metric']} over {index} FAISS index, target "
                  f"{d['target']['name']} ({d['target']['patches']} patches)",
                  *_alignment_lines(d["target"]["means"], d["means_before"], d["means_after"], d["gamma"])]
    else:
        lines.append(f"  means          {_rgb(d['means_before'])}")
    if d.get("skipped"):
        lines.append(f"  skipped   {len(d['skipped'])} bad pair(s): " + ", ".join(x["id"] for x in d["skipped"]))
    for name, a in d["arrays"].items():
        lines.append(f"  {name:<9} {a['dtype']:<8} {str(tuple(a['shape'])):<22} chunks {tuple(a['chunks'])} "
                     f"{'+'.join(a['codecs']) or 'raw'}")
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
    for problem in r.problems:
        click.echo(f"  PROBLEM: {problem}", err=True)
    if not r.ok:
        raise SystemExit(1)
    click.echo("  OK")


if __name__ == "__main__":
    main()
