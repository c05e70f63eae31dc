"""The field's H5 training-patch format, both ways: ``crossfuse-align export`` and ``import``.

Most IVIF training code (CDDFuse's ``dataprocessing.py``, CrossFuse's release, PIAFusion-style
repositories) reads patches from one HDF5 layout: groups ``ir_patchs`` and ``vis_patchs``, one
dataset per patch under the same key ``"0" .. "N-1"``, each float32 of shape (1, P, P) in
[0, 1]: the visible patch as luma Y (their ``rgb2y``: 0.299 R + 0.587 G + 0.114 B on float32
values / 255), the infrared / 255. Their reader lists the keys of ``ir_patchs`` (HDF5 orders them
as strings) and returns (VIS, IR) per key.

:func:`export` writes a corpus in that layout (row ``i`` under key ``str(i)``, Y computed with
their arithmetic, in float32); :func:`import_h5` makes a packed corpus of such a file: the
visible Y is stored as a grey R = G = B patch of ``round(255 y)`` (colour cannot be recovered),
the infrared as ``round(255 x)``; the record names the file and its sha256. Export after import
gives back every value within half a grey level (1/510) plus float32 rounding.

h5py is an extra (``pip install crossfuse[h5]``), imported only here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from crossfuse import atomic
from crossfuse.digest import file_sha256, json_sha256
from crossfuse.errors import CrossfuseError, OutputExistsError, StoreError
from crossfuse.progress import Progress, no_progress
from crossfuse.schema import Counts, CorpusRecord, Dataset, Params, Source, missing_chunks, open_corpus
from crossfuse.verified import open_verified

IR_GROUP, VIS_GROUP = "ir_patchs", "vis_patchs"
#: Their ``rgb2y`` weights, applied to float32 R, G, B / 255 in this order.
Y_WEIGHTS = (0.299, 0.587, 0.114)


class H5FormatError(CrossfuseError):
    """An H5 file that is not in the training-patch layout (or h5py is missing)."""


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise H5FormatError("the H5 format needs h5py: pip install 'crossfuse[h5]' (or pip install h5py).") from exc
    return h5py


def luma(vis: np.ndarray) -> np.ndarray:
    """(n, 3, P, P) uint8 RGB -> (n, 1, P, P) float32 Y, as their ``rgb2y`` computes it on
    ``float32 / 255.`` values (same operations, same order)."""
    x = vis.astype(np.float32) / 255.
    return x[:, 0:1] * Y_WEIGHTS[0] + x[:, 1:2] * Y_WEIGHTS[1] + x[:, 2:3] * Y_WEIGHTS[2]


@dataclass(frozen=True, kw_only=True)
class Exported:
    """What :func:`export` wrote: the file and how many patches of which size."""

    path: str
    patches: int
    patch: int


def export(url: str, out: str, *, overwrite: bool = False, progress: Progress = no_progress) -> Exported:
    """Write the corpus at ``url`` to ``out`` in the H5 layout (see the module docstring), whole
    or not at all (a temporary file, renamed). A damaged corpus is refused: missing chunks before
    anything is written, a chunk edited since the build when it is read (its sha256 is checked)."""
    h5py = _h5py()
    if os.path.isdir(out):
        raise OutputExistsError(f"{out} is a folder; --out names the .h5 file to write (for example {out}/corpus.h5).")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        what = "is a file" if os.path.exists(parent) else "does not exist"
        raise OutputExistsError(f"{out} cannot be written: its folder {parent} {what}. Create the folder, or choose "
                                "another --out.")
    if os.path.exists(out) and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it.")
    group, record = open_corpus(url)
    lost = missing_chunks(url, group, record, ("vis", "ir"))
    if lost:
        raise StoreError(f"{url} is damaged ({'; '.join(lost[:3])}); rebuild it before exporting.")
    checked = open_verified(url, group, record, ("vis", "ir"))  # every chunk read is checked against its digest
    vis_arr, ir_arr = checked["vis"], checked["ir"]
    n, step = vis_arr.shape[0], vis_arr.chunks[0]
    _refuse_if_it_cannot_fit(out, n, record.params.patch)
    with atomic.replacing(out) as tmp, h5py.File(tmp, "w") as f, progress("export patches", n) as advance:
        ir_group, vis_group = f.create_group(IR_GROUP), f.create_group(VIS_GROUP)
        f.attrs["crossfuse"] = json_record(url, record)
        for start in range(0, n, step):
            stop = min(n, start + step)
            y = luma(vis_arr[start:stop])
            ir = ir_arr[start:stop].astype(np.float32) / 255.
            for i in range(stop - start):
                ir_group.create_dataset(str(start + i), data=ir[i])
                vis_group.create_dataset(str(start + i), data=y[i])
            advance(stop - start)
    return Exported(path=out, patches=n, patch=record.params.patch)


#: Bytes an exported patch takes in the file: two float32 P x P datasets and their HDF5 headers
#: and links (measured about 1.2 KiB a dataset with h5py 3).
def exported_size(patches: int, patch: int) -> int:
    return patches * 2 * (patch * patch * 4 + 1300) + 4096


def _refuse_if_it_cannot_fit(out: str, patches: int, patch: int) -> None:
    """An OutputExistsError before anything is written when the file would exceed the process's
    file-size limit or the free space of its disk. HDF5 fails late and loudly there (a thousand
    lines of h5py noise on the way out, then a crash), so the size is checked first."""
    import resource
    import shutil

    need = exported_size(patches, patch)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and need > limit:
        raise OutputExistsError(f"{out} would be about {need / 2**20:.1f} MiB, over this process's file-size limit of "
                                f"{limit / 2**20:.1f} MiB (ulimit -f). Raise the limit, or export a smaller corpus.")
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(out))).free
    if need > free:
        raise OutputExistsError(f"{out} would be about {need / 2**20:.1f} MiB but its disk has {free / 2**20:.1f} MiB "
                                "free. Free some space, or choose another --out.")


def json_record(url: str, record: CorpusRecord) -> str:
    """The provenance an exported file carries (a root attribute; readers of the layout ignore it)."""
    import json

    return json.dumps({"exported_from": url, "kind": record.kind, "record_sha256": record.record_sha256,
                       "patch": record.params.patch, "patches": record.counts.patches})


def _read_layout(f, path: str) -> tuple[list[str], int]:
    """The keys (in row order) and patch size of an H5 file in the layout, or an H5FormatError
    naming what was found instead."""
    found = sorted(f.keys())
    if IR_GROUP not in f or VIS_GROUP not in f:
        raise H5FormatError(f"{path} is not in the training-patch layout: it holds {found or 'nothing'} at its top "
                            f"level, not the groups '{IR_GROUP}' and '{VIS_GROUP}' (CDDFuse's dataprocessing.py "
                            "layout).")
    _refuse_links(f, path)
    ir_keys, vis_keys = set(f[IR_GROUP].keys()), set(f[VIS_GROUP].keys())
    if ir_keys != vis_keys:
        only = sorted(ir_keys ^ vis_keys)
        raise H5FormatError(f"{path}: '{IR_GROUP}' and '{VIS_GROUP}' hold different keys ({len(only)} in one only, "
                            f"e.g. {only[:3]}); each patch needs both.")
    if not ir_keys:
        raise H5FormatError(f"{path}: '{IR_GROUP}' and '{VIS_GROUP}' are empty; there is nothing to import.")
    if not all(k.isdigit() and str(int(k)) == k for k in ir_keys) or \
            sorted(map(int, ir_keys)) != list(range(len(ir_keys))):
        odd = sorted(k for k in ir_keys if not k.isdigit())[:3]
        raise H5FormatError(f"{path}: the patch keys are not \"0\" .. \"{len(ir_keys) - 1}\""
                            + (f" (found {odd})" if odd else " (some numbers are missing)") + ".")
    keys = [str(i) for i in range(len(ir_keys))]
    first = f[IR_GROUP][keys[0]]
    shape = tuple(first.shape)
    if len(shape) != 3 or shape[0] != 1 or shape[1] != shape[2]:
        raise H5FormatError(f"{path}: patch '0' of '{IR_GROUP}' has shape {shape}; the layout stores (1, P, P).")
    return keys, shape[1]


def _refuse_links(f, path: str) -> None:
    """An H5FormatError naming the first link that leaves the file (an ``ExternalLink``: the
    record's sha256 covers this file alone) or leads nowhere (a dangling soft link), and the
    first patch that is a group, not a dataset."""
    h5py = _h5py()
    for group in (IR_GROUP, VIS_GROUP):
        link = f.get(group, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise H5FormatError(f"{path}: '{group}' is a link to another file ({link.filename}:{link.path}); the "
                                "import records this file's sha256 alone, so links out of it are refused. Copy "
                                "the patches into the file (h5py: copy, or h5repack).")
        if not isinstance(f.get(group), h5py.Group):
            raise H5FormatError(f"{path}: '{group}' is not a group of patches "
                                f"({type(f.get(group)).__name__ if group in f else 'a link that leads nowhere'}).")
        for key in f[group].keys():
            link = f[group].get(key, getlink=True)
            where = f"patch {key!r} of '{group}'"
            if isinstance(link, h5py.ExternalLink):
                raise H5FormatError(f"{path}: {where} is a link to another file ({link.filename}:{link.path}); links "
                                    "out of the file are refused (the import records this file's sha256 alone).")
            if isinstance(link, h5py.SoftLink) and f[group].get(key) is None:
                raise H5FormatError(f"{path}: {where} is a soft link to {link.path}, which does not exist.")
            if not isinstance(f[group].get(key), h5py.Dataset):
                raise H5FormatError(f"{path}: {where} is a {type(f[group].get(key)).__name__}, not a dataset of "
                                    "(1, P, P) values.")


def _to_uint8(x: np.ndarray, path: str, where: str) -> np.ndarray:
    if x.dtype.kind != "f":
        raise H5FormatError(f"{path}: {where} is {x.dtype}; the layout stores float values in [0, 1].")
    if not np.all(np.isfinite(x)) or x.min() < -1e-6 or x.max() > 1 + 1e-6:
        raise H5FormatError(f"{path}: {where} holds values outside [0, 1] (from {np.nanmin(x)} to {np.nanmax(x)}); "
                            "the layout stores intensities / 255.")
    return np.clip(np.floor(x.astype(np.float64) * 255 + 0.5), 0, 255).astype(np.uint8)


def read_patches(path: str, *, progress: Progress = no_progress) -> tuple[np.ndarray, np.ndarray]:
    """Every patch of an H5 file in the layout, in key order: ``(vis, ir)`` as stored by a packed
    corpus, (n, 3, P, P) grey R = G = B and (n, 1, P, P), uint8 ``round(255 v)``."""
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise H5FormatError(f"{path} is not an HDF5 file h5py can open ({exc}).") from exc
    with f:
        keys, p = _read_layout(f, path)
        vis = np.empty((len(keys), 3, p, p), dtype=np.uint8)
        ir = np.empty((len(keys), 1, p, p), dtype=np.uint8)
        with progress("read H5 patches", len(keys)) as advance:
            for i, key in enumerate(keys):
                for group, out in ((IR_GROUP, ir), (VIS_GROUP, vis)):
                    data = f[group][key]
                    if tuple(data.shape) != (1, p, p):
                        raise H5FormatError(f"{path}: patch {key!r} of '{group}' has shape {tuple(data.shape)}, patch "
                                            f"'0' has (1, {p}, {p}); every patch must have one size.")
                    out[i] = _to_uint8(np.asarray(data), path, f"patch {key!r} of '{group}'")
                advance(1)
    return vis, ir


def import_h5(path: str, out: str, *, chunk: int = 256, overwrite: bool = False,
              progress: Progress = no_progress) -> CorpusRecord:
    """Make a packed corpus at ``out`` of the H5 file ``path`` (see the module docstring). The
    record's source is the file itself (its sha256); ``stride`` is recorded as 0 (not known) and
    each patch's ``origin`` as (-1, -1)."""
    from crossfuse.align import store as _store
    from crossfuse.align.engine import zarr_settings
    from crossfuse.align.lock import new_token, store_lock

    if not os.path.isfile(path):
        raise H5FormatError(f"{path} does not exist or is not a file.")
    vis, ir = read_patches(path, progress=progress)
    sha = file_sha256(path)
    name = os.path.splitext(os.path.basename(path))[0]
    n, p = len(vis), vis.shape[-1]
    means = vis.reshape(n, 3, -1).mean(axis=2, dtype=np.float64)
    inputs = {"import": {"format": "h5 (ir_patchs / vis_patchs, float32 (1, P, P) in [0, 1])",
                         "file": os.path.abspath(path), "sha256": sha,
                         "visible": "Y stored as grey R = G = B, round(255 y)"}, "chunk": chunk}
    fingerprint = json_sha256(inputs)
    token = new_token()
    with store_lock(out), zarr_settings():
        group, _ = _store.open_for_build(out, kind="packed", fingerprint=fingerprint, scan_fingerprint=fingerprint,
                                         inputs=inputs, overwrite=overwrite, token=token)
        _store.create_arrays(group, n=n, patch=p, chunk=chunk)
        group["vis"][...] = vis
        group["ir"][...] = ir
        group["source"][...] = np.zeros(n, dtype=np.int32)
        group["origin"][...] = np.full((n, 2), -1, dtype=np.int32)
        group["means"][...] = means.astype(np.float32)
        group["distance"][...] = np.zeros(n, dtype=np.float32)
        overall = tuple(float(v) for v in means.mean(axis=0)) if n else (0.0, 0.0, 0.0)
        record = CorpusRecord(
            kind="packed", params=Params(patch=p, stride=0, chunk=chunk),
            sources=(Source(id=name, ir=os.path.basename(path), vis=os.path.basename(path), ir_sha256=sha,
                            vis_sha256=sha),),
            aux=Dataset(name=name, root=os.path.dirname(os.path.abspath(path)), sha256=sha),
            gamma=(1.0, 1.0, 1.0), means_before=overall, means_after=overall,
            counts=Counts(aux_pairs=1, aux_patches=n, patches=n, skipped=0),
            chunks={name_: _store.chunk_digests(out, group, name_) for name_ in group.array_keys()
                    if name_ in ("vis", "ir", "source", "origin", "means", "distance")})
        return _store.finalize(out, group, record, token)
