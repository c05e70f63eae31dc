"""``crossfuse-align report``: what an alignment did, as an ``index.html`` with PNG figures.

For an aligned corpus: the W1 table (target against pool, selection before and after the gamma
correction) at the top; per channel the distributions of patch means of the target, the pool,
the selection before and after; the patch means as point clouds in two projections; the three
gamma curves; and a grid of selected patches before | after with their distances (the "before"
pixels are cut from the source images at the recorded origins, so the sources must be
reachable; otherwise the grid shows the stored patches alone). For a packed corpus: its channel
distributions and a grid of its patches. Everything is read from the store itself.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass

import numpy as np
import zarr

from crossfuse import atomic
from crossfuse import manifest as _manifest
from crossfuse.align import gamma as _gamma
from crossfuse.align.config import selection_words
from crossfuse.align.describe import stats_problems
from crossfuse.errors import CrossfuseError, OutputExistsError, StoreError
from crossfuse.imageio import decode, read_bytes
from crossfuse.plotting import pyplot, save_figure
from crossfuse.schema import STATS_GROUP, CorpusRecord, open_corpus

CHANNELS = ("R", "G", "B")
COLOURS = {"target": "black", "pool": "0.6", "selection": "tab:blue"}
#: The stored patches of an aligned corpus are "after <its transform>" (gamma, cdf, none), drawn
#: in this colour; every other population in ``COLOURS``.
AFTER_COLOUR = "tab:orange"
#: At most this many points of a distribution are drawn in a point cloud (a seeded subsample).
MAX_POINTS = 20_000


@dataclass(frozen=True, kw_only=True)
class Report:
    """What was written: the page and its figures (paths)."""

    index: str
    figures: tuple[str, ...]


def _means(group: zarr.Group, record: CorpusRecord) -> dict[str, np.ndarray]:
    """(n, 3) patch means, 0-255, per population (those the store holds; of a large pool, a
    uniform sample)."""
    out = {}
    if STATS_GROUP in group:
        stats = group[STATS_GROUP]
        for key, name in (("target_means", "target"), ("pool_means", "pool")):
            if key in stats:
                out[name] = np.asarray(stats[key][...], dtype=np.float64)
    before = np.asarray(group["means"][...], dtype=np.float64)
    if record.kind == "packed":
        return {"corpus": before}
    out["selection"] = before
    out[f"after {record.params.transform or 'gamma'}"] = _stored_means(group)
    return out


def _colour(name: str) -> str:
    return AFTER_COLOUR if name.startswith("after ") else COLOURS.get(name, "tab:green")


def _stored_means(group: zarr.Group) -> np.ndarray:
    """Each stored visible patch's channel means, read chunk by chunk."""
    vis = group["vis"]
    step = vis.chunks[0]
    return np.concatenate([vis[i:i + step].reshape(-1, 3, vis.shape[2] * vis.shape[3]).mean(axis=2)
                           for i in range(0, vis.shape[0], step)]) if vis.shape[0] else np.zeros((0, 3))


def _label(name: str, values: np.ndarray, pool_patches: int | None) -> str:
    """A population's legend: its name and size (for a sampled pool, of how many)."""
    if name == "pool" and pool_patches and pool_patches > len(values):
        return f"pool (a sample of {len(values):,} of {pool_patches:,})"
    return f"{name} ({len(values):,})"


def _distributions(means: dict[str, np.ndarray], path: str, title: str, pool_patches: int | None = None) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    bins = np.linspace(0, 255, 65)
    for c, ax in enumerate(axes):
        for name, values in means.items():
            if len(values):
                ax.hist(values[:, c], bins=bins, density=True, histtype="step", linewidth=1.6,
                        color=_colour(name), label=_label(name, values, pool_patches))
        ax.set_xlabel(f"patch mean of {CHANNELS[c]} (0-255)")
        ax.set_ylabel("density (fraction of patches per unit)")
        ax.set_title(f"channel {CHANNELS[c]}")
        ax.set_xlim(0, 255)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def _subsample(values: np.ndarray) -> np.ndarray:
    if len(values) <= MAX_POINTS:
        return values
    return values[np.sort(np.random.default_rng(0).choice(len(values), MAX_POINTS, replace=False))]


def _clouds(means: dict[str, np.ndarray], path: str, title: str, pool_patches: int | None = None) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (x, y) in zip(axes, ((0, 1), (2, 1))):
        drawn = ["pool", "corpus", "selection"] + [n for n in means if n.startswith("after ")] + ["target"]
        for name in drawn:
            if name in means and len(means[name]):
                pts = _subsample(means[name])
                ax.scatter(pts[:, x], pts[:, y], s=4 if name != "target" else 6, alpha=0.5,
                           color=_colour(name),
                           label=_label(name, means[name], pool_patches))
        ax.set_xlabel(f"patch mean of {CHANNELS[x]} (0-255)")
        ax.set_ylabel(f"patch mean of {CHANNELS[y]} (0-255)")
        ax.set_xlim(0, 255)
        ax.set_ylim(0, 255)
        ax.set_aspect("equal")
    axes[0].legend(fontsize=8, markerscale=3)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def _gamma_curves(record: CorpusRecord, path: str) -> None:
    """The lookup table each channel went through: the gamma curves, the recorded histogram-matching
    tables (``--transform cdf``), or the identity (``--transform none``)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    levels = np.arange(256)
    ax.plot(levels, levels, color="0.7", linestyle="--", label="identity")
    transform = record.params.transform or "gamma"
    for c, (name, colour) in enumerate(zip(CHANNELS, ("tab:red", "tab:green", "tab:blue"))):
        if record.luts is not None:
            ax.step(levels, record.luts[c], where="mid", color=colour, label=f"{name}: histogram matching")
        else:
            ax.plot(levels, _gamma.lut(record.gamma[c]), color=colour, label=f"{name}: gamma {record.gamma[c]:.3f}")
    ax.set_xlabel("input intensity (0-255)")
    ax.set_ylabel("output intensity (0-255)")
    titles = {"gamma": "gamma per channel: out = floor(255 (v/255)^(1/gamma))",
              "cdf": "histogram matching per channel (the monotone table closest in W1)",
              "none": "no transform: the patches as they are"}
    ax.set_title(titles.get(transform, transform), fontsize=10)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def _source_patch(record: CorpusRecord, root: str | None, source: int, origin: np.ndarray) -> np.ndarray | None:
    """The visible patch as the source image holds it (before correction), or None if unreadable."""
    src = record.sources[source]
    base = root or record.aux.root
    url = _manifest.join(base, src.vis) if base else src.vis
    try:
        rgb = decode(read_bytes(url, pair_id=src.id), mode="RGB", url=url, pair_id=src.id)
    except (CrossfuseError, OSError):
        return None
    y, x = int(origin[0]), int(origin[1])
    p = record.params.patch
    return rgb[y:y + p, x:x + p]


def _patch_grid(group: zarr.Group, record: CorpusRecord, root: str | None, path: str, count: int = 12) -> None:
    """Selected patches (closest first, then evenly up to the farthest) before | after, or for a
    packed corpus evenly spaced patches, visible | infrared."""
    plt = pyplot()
    n = group["vis"].shape[0]
    distance = np.asarray(group["distance"][...])
    order = np.argsort(distance, kind="stable") if record.kind == "aligned" else np.arange(n)
    picks = order[np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))]
    cols = 4
    rows = -(-len(picks) // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    origins, sources = group["origin"], group["source"]
    for i, row in enumerate(picks):
        row = int(row)
        stored = np.moveaxis(group["vis"][row], 0, -1)
        if record.kind == "aligned":
            left = _source_patch(record, root, int(sources[row]), origins[row])
            label = f"d={distance[row]:.1f}"
            titles = (f"before {label}", "after")
        else:
            left, stored = stored, group["ir"][row][0]
            titles = (f"#{row} visible", "infrared")
        r, c = divmod(i, cols)
        for k, (img, title) in enumerate(((left, titles[0]), (stored, titles[1]))):
            ax = axes[r][2 * c + k]
            if img is None:
                ax.text(0.5, 0.5, "source\nunreadable", ha="center", va="center", fontsize=7)
            else:
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(title, fontsize=7)
    fig.suptitle("selected patches, closest first: as in the source | as stored (gamma-corrected); d = L1 "
                 "distance of RGB means to the target's" if record.kind == "aligned" else "patches of the corpus",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    plt.close(fig)


def _w1_table(record: CorpusRecord) -> str:
    if record.w1 is None:
        return "<p>This corpus records no W1 (built before crossfuse measured it); rebuild it to see them.</p>"
    select, transform = record.params.select or "topk", record.params.transform or "gamma"
    luma = record.w1_luma
    rows = "".join(f"<tr><th>{label}</th>" + "".join(f"<td>{v:.2f}</td>" for v in values)
                   + (f"<td>{y:.2f}</td>" if luma is not None else "") + "</tr>"
                   for label, values, y in (
                       ("whole auxiliary pool", record.w1.pool, luma.pool if luma else 0),
                       (f"selection ({html.escape(select)})", record.w1.before, luma.before if luma else 0),
                       *([(f"selection after {html.escape(transform)}", record.w1.after, luma.after if luma else 0)]
                         if transform != "none" else [])))
    extra = "<th>pixel luma Y</th>" if luma is not None else ""
    return ("<table><caption>W1 (1-D Wasserstein distance, 0-255 units) from the target's distribution of patch "
            "means, per channel, and of every pixel's luma (what the network sees); lower is closer</caption>"
            f"<tr><th></th><th>R</th><th>G</th><th>B</th>{extra}</tr>{rows}</table>")


def _transform_fact(record: CorpusRecord) -> str | None:
    transform = record.params.transform or "gamma"
    if transform == "none":
        return None  # nothing was done: no gamma to show
    if transform == "cdf":
        return "lookup tables: histogram matching per channel (gamma.png draws them)"
    unreachable = [ch for ch, ok in zip(CHANNELS, record.gamma_reachable or (True,) * 3) if not ok]
    return "gamma: " + ", ".join(f"{ch} {g:.4f}" for ch, g in zip(CHANNELS, record.gamma)) + (
        f" ({', '.join(unreachable)} unreachable: no gamma brings the selection's mean to the target's)"
        if unreachable else "")


def _facts(url: str, record: CorpusRecord) -> str:
    c, p = record.counts, record.params
    items = [f"kind: {record.kind}", f"patches: {c.patches} of {p.patch}x{p.patch}, stride {p.stride}",
             f"auxiliary: {html.escape(record.aux.name)} ({c.aux_pairs} pairs, {c.aux_patches} patches)"]
    if record.kind == "aligned":
        t = record.target
        items += [f"target: {html.escape(t.name)} ({t.pairs} pairs, {t.patches} patches), means "
                  + ", ".join(f"{ch} {v:.2f}" for ch, v in zip(CHANNELS, t.means)),
                  "selection: " + html.escape(selection_words(p, counted=True)),
                  *filter(None, [_transform_fact(record)]),
                  "selection means before / after: " + ", ".join(
                      f"{ch} {a:.2f} / {b:.2f}" for ch, a, b in zip(CHANNELS, record.means_before, record.means_after))]
    return f"<h2>{html.escape(url)}</h2><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


#: The files a report consists of; a folder holding anything else is not replaced without overwrite.
FILES = ("index.html", "distributions.png", "clouds.png", "gamma.png", "patches.png")
#: Marks an index.html as crossfuse's own, so that a rerun replaces it and a user's is refused.
GENERATOR = '<meta name="generator" content="crossfuse-align report">'


def _foreign_files(out: str) -> list[str]:
    """Entries of ``out`` that an earlier report did not write: anything not among :data:`FILES`,
    and an ``index.html`` without crossfuse's :data:`GENERATOR` mark (or older reports' title)."""
    foreign = sorted(name for name in os.listdir(out) if name not in FILES)
    index = os.path.join(out, "index.html")
    if os.path.isfile(index):
        with open(index, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
            if GENERATOR not in head and "<title>crossfuse report</title>" not in head:  # the latter: older reports
                foreign.insert(0, "index.html")
    return foreign


def write(url: str, out: str, *, root: str | None = None, overwrite: bool = False) -> Report:
    """Write ``out/index.html`` and its figures for the corpus at ``url``; ``root`` overrides the
    recorded root of the source images (for the "before" patches). An ``out`` holding files an
    earlier report did not write is refused unless ``overwrite`` (which replaces the report's own
    file names and leaves everything else there)."""
    group, record = open_corpus(url)
    damaged = stats_problems(group, record)
    if damaged:
        raise StoreError(f"{url}: {damaged[0]}. The report would draw wrong distributions; "
                         f"`crossfuse-align verify {url}` checks the whole store.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputExistsError(f"--out {out} is a file; the report is a folder (index.html and its figures): "
                                "choose another --out.")
    if os.path.isdir(out) and not overwrite and (foreign := _foreign_files(out)):
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputExistsError(f"--out {out} holds files this report did not write ({shown}); a report writes "
                                f"{', '.join(FILES)} there. Choose an empty or new folder, or pass --overwrite to "
                                "replace those names (other files are left as they are).")
    os.makedirs(out, exist_ok=True)
    means = _means(group, record)
    figures = []
    name = record.aux.name if record.kind == "packed" else f"{record.aux.name} aligned to {record.target.name}"
    pool_patches = group[STATS_GROUP].attrs.get("pool_patches") if STATS_GROUP in group else None
    jobs = [("distributions.png", lambda p: _distributions(means, p, f"distribution of patch means: {name}",
                                                           pool_patches)),
            ("clouds.png", lambda p: _clouds(means, p, f"patch means: {name}", pool_patches))]
    if record.kind == "aligned" and (record.params.transform or "gamma") != "none":
        jobs.append(("gamma.png", lambda p: _gamma_curves(record, p)))
    elif os.path.isfile(os.path.join(out, "gamma.png")):
        os.remove(os.path.join(out, "gamma.png"))  # an earlier report's: this corpus has no transform to draw
    jobs.append(("patches.png", lambda p: _patch_grid(group, record, root, p)))
    for filename, draw in jobs:
        path = os.path.join(out, filename)
        draw(path)
        figures.append(path)
    body = _facts(url, record) + (_w1_table(record) if record.kind == "aligned" else "")
    body += "".join(f'<figure><img src="{os.path.basename(f)}" alt="{os.path.basename(f)}"></figure>' for f in figures)
    page = ("<!doctype html><html><head><meta charset='utf-8'>" + GENERATOR + "<title>crossfuse report</title><style>"
            "body{font-family:sans-serif;max-width:1400px;margin:1em auto}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #999;padding:.3em .8em;text-align:right}caption{text-align:left;padding:.3em 0}"
            "img{max-width:100%}</style></head><body><h1>What the alignment did</h1>" + body + "</body></html>\n")
    index = os.path.join(out, "index.html")
    atomic.write_text(index, page)
    return Report(index=index, figures=tuple(figures))
