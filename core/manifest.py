"""Dataset manifests: which IR/VIS image pairs make a dataset, and where they live.

A manifest is a JSON document::

    {"name": "RoadScene", "root": "../datasets/RoadScene",
     "pairs": [{"id": "FLIR_00006", "ir": "ir/FLIR_00006.jpg", "vis": "vis/FLIR_00006.jpg",
                "sha256": {"ir": "...", "vis": "..."}}]}

``root`` is a local path or an fsspec URL; a relative root is taken relative to the
manifest's own location. ``sha256`` is optional; when present, reading a pair checks it.
A folder holding ``ir/`` + ``vis/`` (or ``infrared/`` + ``visible/``, or ``ir/`` + ``vi/``)
stands for a manifest whose pairs are matched by file stem.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from dataclasses import dataclass
from typing import Any

import fsspec

from crossfuse.digest import file_sha256, json_sha256
from crossfuse.errors import ManifestError, OutputExistsError
from crossfuse.progress import Progress, no_progress

#: Sub-folder pairs accepted for a dataset folder, in order of preference.
FOLDER_LAYOUTS = (("ir", "vis"), ("infrared", "visible"), ("ir", "vi"))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True, kw_only=True)
class Pair:
    """One IR/VIS pair. ``ir``/``vis`` are paths relative to the dataset root; an empty string
    marks a missing partner (found only in dataset folders), reported when the pair is read."""

    id: str
    ir: str
    vis: str
    ir_sha256: str | None = None
    vis_sha256: str | None = None


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A named list of pairs under one root (local path or fsspec URL)."""

    name: str
    root: str
    pairs: tuple[Pair, ...]
    origin: str  # where the manifest came from, for messages
    #: read files whose real path (symlinks resolved) lies outside a local root (off by default)
    follow_symlinks: bool = False

    def url(self, relative: str) -> str:
        """The full path or URL of a file given relative to the root."""
        return join(self.root, relative)

    def source(self, relative: str) -> str:
        """:meth:`url`, checked before reading: on a local root, the file's real path (every
        symlink resolved, in the folders too) must lie inside the root's real path, unless
        ``follow_symlinks``. Raises :class:`ManifestError` naming the file and where it leads."""
        url = self.url(relative)
        if self.follow_symlinks or "://" in url:
            return url
        import os

        real = os.path.realpath(url)
        if not is_within(real, self.root):
            raise ManifestError(f"{url} leads outside the dataset root {self.root} (a symlink to {real}); "
                                "crossfuse reads only files inside the root. Copy the file in, or pass "
                                "--follow-symlinks if you trust where the link points (it is recorded).")
        return url

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict (paths relative to the root)."""
        pairs = []
        for p in self.pairs:
            item: dict[str, Any] = {"id": p.id, "ir": p.ir, "vis": p.vis}
            if p.ir_sha256 and p.vis_sha256:
                item["sha256"] = {"ir": p.ir_sha256, "vis": p.vis_sha256}
            pairs.append(item)
        return {"name": self.name, "root": self.root, "pairs": pairs}


def is_within(path: str, folder: str) -> bool:
    """Whether the local ``path`` lies in ``folder`` (or is it) once every symlink of both is resolved."""
    import os

    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _contained(value: str) -> bool:
    """Whether ``value`` is a relative path that stays inside its folder: no absolute path, drive,
    URL, backslash, NUL, empty part, ``.`` or ``..``."""
    if not value or "\\" in value or "\0" in value or "://" in value or value.startswith("/") or ":" in value[:3]:
        return False
    return all(part not in ("", ".", "..") for part in value.split("/"))


#: Characters a pair id may not hold besides control characters: those some file systems refuse
#: in a name (Windows'), and which would also break the CSV, Markdown and HTML the id lands in.
ID_FORBIDDEN = '\\:*?"<>|'
#: The id rule in words, as every refusal states it.
ID_RULE = ("ids become file names under --out: printable characters except " + " ".join(ID_FORBIDDEN)
           + ", '/' between sub-folders, no empty, '.' or '..' part, no absolute path")


def is_plain_id(value: str) -> bool:
    """Whether ``value`` obeys :data:`ID_RULE`."""
    return _contained(value) and value.isprintable() and not any(c in ID_FORBIDDEN for c in value)


def check_pair(spec: str, pair: Pair) -> None:
    """Refuse a pair whose id is not a plain (relative, contained, printable) name, or whose paths
    leave the dataset root. Ids become output file names (fuse writes ``OUT/<id>.png``) and paths
    are read from disk, so a manifest from elsewhere must not reach outside the folders the user
    named."""
    if not is_plain_id(pair.id):
        raise ManifestError(f"{spec}: pair id {pair.id!r} is not a plain name ({ID_RULE}). Rename the pair.")
    for side in ("ir", "vis"):
        path = getattr(pair, side)
        if path and not _contained(path):
            raise ManifestError(f"{spec}: pair {pair.id!r}: {side} path {path!r} leaves the dataset root (absolute, "
                                "a URL, or '..'). Put the images under the root, or give --root the folder that "
                                "holds them.")


def join(root: str, relative: str) -> str:
    """Join a relative path onto a local root or a URL root."""
    if "://" in root:
        protocol, path = root.split("://", 1)
        return f"{protocol}://{posixpath.normpath(posixpath.join(path, relative))}"
    import os

    return os.path.normpath(os.path.join(root, relative))


def _parent(location: str) -> str:
    if "://" in location:
        return posixpath.dirname(location.rstrip("/"))
    import os

    return os.path.dirname(os.path.abspath(location))


def absolute(location: str) -> str:
    """A local path made absolute (so workers with another working directory find it); URLs as they are."""
    import os

    return location if "://" in location else os.path.abspath(location)


def _is_absolute(root: str) -> bool:
    import os

    return "://" in root or os.path.isabs(root)


def load(spec: str, *, root: str | None = None, follow_symlinks: bool = False) -> Manifest:
    """Load a dataset from a manifest file (``*.json``) or a dataset folder.

    ``root`` overrides the manifest's root (a relative one is taken from the working folder, as
    any path typed on a command line; a folder's root is the folder itself);
    ``follow_symlinks`` lets its pairs be read through symlinks leading outside the root
    (see :meth:`Manifest.source`). Raises :class:`ManifestError` with the location and the fix
    when it cannot be understood.
    """
    fs, path = fsspec.core.url_to_fs(spec)
    if not fs.exists(path):
        raise ManifestError(f"{spec} does not exist: give a manifest .json or a dataset folder.")
    loaded = _from_folder(spec, fs, path, root) if fs.isdir(path) else _from_file(spec, fs, path, root)
    return dataclasses.replace(loaded, follow_symlinks=follow_symlinks) if follow_symlinks else loaded


def _from_file(spec: str, fs: Any, path: str, root: str | None) -> Manifest:
    try:
        with fs.open(path, "rb") as fh:
            doc = json.loads(fh.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{spec} is not a JSON manifest ({exc}).") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("pairs"), list):
        raise ManifestError(f"{spec}: a manifest is a JSON object with 'name', 'root' and a 'pairs' list.")
    name = doc.get("name") or posixpath.splitext(posixpath.basename(path))[0]
    base = root if root is not None else doc.get("root", ".")
    if not isinstance(base, str):
        raise ManifestError(f"{spec}: 'root' must be a path or URL string, got {base!r}.")
    if root is not None and not _is_absolute(base):
        import os

        base = os.path.abspath(base)  # an override is a path the user typed: from the working folder
    elif not _is_absolute(base):
        base = join(_parent(spec), base)  # the file's own root: from the manifest's folder
    pairs = []
    seen: set[str] = set()
    for i, item in enumerate(doc["pairs"]):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item.get(k) for k in ("id", "ir", "vis")):
            raise ManifestError(f"{spec}: pair #{i} needs non-empty string 'id', 'ir' and 'vis', got {item!r}.")
        if item["id"] in seen:
            raise ManifestError(f"{spec}: pair id {item['id']!r} appears twice; ids must be unique.")
        seen.add(item["id"])
        sha = item.get("sha256") or {}
        if not isinstance(sha, dict):
            raise ManifestError(f"{spec}: pair {item['id']!r}: 'sha256' must be {{\"ir\": ..., \"vis\": ...}}.")
        pair = Pair(id=item["id"], ir=item["ir"], vis=item["vis"], ir_sha256=sha.get("ir"), vis_sha256=sha.get("vis"))
        check_pair(spec, pair)
        pairs.append(pair)
    return Manifest(name=str(name), root=base, pairs=tuple(pairs), origin=spec)


def _from_folder(spec: str, fs: Any, path: str, root: str | None) -> Manifest:
    entries = {posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)}
    if "zarr.json" in entries or ".zgroup" in entries:
        raise ManifestError(f"{spec} is a Zarr store (a corpus, perhaps), not a dataset of image pairs: give a "
                            "manifest .json or a folder with ir/ + vis/ sub-folders. Corpora go to "
                            "`crossfuse train --data`.")
    for ir_dir, vis_dir in FOLDER_LAYOUTS:
        if ir_dir in entries and vis_dir in entries:
            break
    else:
        layouts = ", ".join(f"{a}/ + {b}/" for a, b in FOLDER_LAYOUTS)
        raise ManifestError(f"{spec} is a folder without image sub-folders: expected {layouts}.")
    ir_files = _images_by_stem(spec, fs, posixpath.join(path, ir_dir), ir_dir)
    vis_files = _images_by_stem(spec, fs, posixpath.join(path, vis_dir), vis_dir)
    pairs = tuple(
        Pair(id=stem, ir=ir_files.get(stem, ""), vis=vis_files.get(stem, ""))
        for stem in sorted(set(ir_files) | set(vis_files))
    )
    for pair in pairs:
        check_pair(spec, pair)
    name = posixpath.basename(path.rstrip("/")) or spec
    if root is None:
        root = absolute(spec)
    return Manifest(name=name, root=root, pairs=pairs, origin=spec)


def _images_by_stem(spec: str, fs: Any, folder: str, sub: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for full in sorted(fs.ls(folder, detail=False)):
        name = posixpath.basename(full)
        stem, suffix = posixpath.splitext(name)
        if suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if stem in out:
            raise ManifestError(
                f"{spec}: {sub}/ holds two images with stem {stem!r} ({out[stem]}, {sub}/{name}); "
                "pairs are matched by stem, so keep one."
            )
        out[stem] = f"{sub}/{name}"
    return out


def fingerprint(manifest: Manifest) -> str:
    """sha256 over the manifest's pairs (ids, relative paths, declared checksums)."""
    return json_sha256(manifest.to_json()["pairs"])


def write(manifest: Manifest, path: str) -> None:
    """Write ``manifest`` as JSON to ``path``."""
    with fsspec.open(path, "w") as fh:
        json.dump(manifest.to_json(), fh, indent=1)
        fh.write("\n")


def with_checksums(manifest: Manifest, *, progress: Progress = no_progress) -> Manifest:
    """A copy of ``manifest`` whose pairs carry the sha256 of their files as they are now (every
    pair checked for both partners before any file is read)."""
    for p in manifest.pairs:
        if not p.ir or not p.vis:
            raise ManifestError(f"{manifest.origin}: pair {p.id!r} has no "
                                f"{'infrared' if not p.ir else 'visible'} partner; fix the folder first.")
    pairs = []
    with progress("checksum pairs", len(manifest.pairs)) as advance:
        for p in manifest.pairs:
            pairs.append(Pair(id=p.id, ir=p.ir, vis=p.vis, ir_sha256=file_sha256(manifest.source(p.ir)),
                              vis_sha256=file_sha256(manifest.source(p.vis))))
            advance(1, p.id)
    return Manifest(name=manifest.name, root=manifest.root, pairs=tuple(pairs), origin=manifest.origin,
                    follow_symlinks=manifest.follow_symlinks)


def relocate(manifest: Manifest, *, root: str, name: str | None = None) -> Manifest:
    """The same pairs under another ``root`` string (e.g. a root relative to where it is saved)."""
    return Manifest(name=name or manifest.name, root=root, pairs=manifest.pairs, origin=manifest.origin,
                    follow_symlinks=manifest.follow_symlinks)


def save(spec: str, out: str, *, name: str | None = None, root: str | None = None,
         overwrite: bool = False, follow_symlinks: bool = False, progress: Progress = no_progress) -> Manifest:
    """Write a manifest of the dataset ``spec`` (a folder or a manifest) to ``out`` with the sha256
    of every file. The recorded ``root`` is by default the dataset's location, made relative to
    ``out``'s folder when both are local, so the pair can be moved together."""
    import os

    if os.path.exists(out) and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it.")
    m = with_checksums(load(spec, follow_symlinks=follow_symlinks), progress=progress)
    if root is None:
        root = m.root
        if "://" not in root and "://" not in out:
            root = os.path.relpath(os.path.abspath(root), os.path.dirname(os.path.abspath(out)))
    saved = relocate(m, root=root, name=name)
    write(saved, out)
    return saved
