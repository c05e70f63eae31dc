"""Fetch the public datasets a manifest lists, each file checked against the sha256 the manifest
records: ``crossfuse-align datasets fetch NAME --to DIR``.

Each dataset's files come from the public repository and commit that ``../shared/datasets/*/SOURCE.md``
name, as raw files (``https://raw.githubusercontent.com/<repo>/<commit>/<path>``); the path of a
file there is its manifest path rewritten by the dataset's rules (:data:`SOURCES`). ``base`` (the
``--from`` option) fetches from a mirror instead, laid out as the manifest (``<base>/<manifest
path>``): a copy on a web server, or a local folder. A dataset no program can fetch (M3FD here comes
from three repositories under other names) has instructions instead: the command prints them and
then checks what was put in place.

A file already in place with the recorded digest is kept; a fetched file is written whole
(temporary file, checked, then renamed), so an interrupted fetch resumes and never leaves a
half-written or wrong file under its name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import urllib.error
import urllib.request

from crossfuse import atomic
from crossfuse import manifest as _manifest
from crossfuse.digest import file_sha256
from crossfuse.errors import ManifestError
from crossfuse.manifest import Manifest
from crossfuse.progress import Progress, no_progress


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a dataset's files come from: ``repo`` at ``commit``, each manifest path rewritten by
    the first matching (pattern, replacement) of ``rules``; or, with ``manual``, what a person must
    download and where to put it."""

    repo: str = ""
    commit: str = ""
    rules: tuple[tuple[str, str], ...] = ()
    manual: str = ""

    def url(self, relative: str) -> str:
        for pattern, replacement in self.rules:
            if re.match(pattern, relative):
                return (f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/"
                        + re.sub(pattern, replacement, relative))
        raise ManifestError(f"no rule of {self.repo} maps {relative}; pass --from with a mirror laid out as the "
                            "manifest.")


#: The sources of the datasets the bundled manifests list, by their folder's name (the last part
#: of a manifest's root), as ../shared/datasets/*/SOURCE.md record them.
SOURCES = {
    "RoadScene": Source("hanna-xu/RoadScene", "ab71420f8fc96396eeb97eecf3694909b3feb656",
                        ((r"^ir/(.+)$", r"cropinfrared/\1"), (r"^vis/(.+)$", r"crop_LR_visible/\1"))),
    "TNO": Source("Zhaozixiang1228/IVIF-DIDFuse", "5f287300dce7cbc90b9e08e6872455af6baa279f",
                  ((r"^ir/0*(\d+)\.bmp$", r"Datasets/Test_data_TNO/IR\1.bmp"),
                   (r"^vis/0*(\d+)\.bmp$", r"Datasets/Test_data_TNO/VIS\1.bmp"))),
    "MSRS": Source("ycc568/my-seafusion", "cff58e5c005f5b189010b5de5f5869277852dfa8",
                   ((r"^ir/(.+)$", r"datasets/test_imgs/ir/\1"), (r"^vis/(.+)$", r"datasets/test_imgs/vi/\1"))),
    "VIFB": Source("xingchenzhang/VIFB", "22b2ea9d91499cc5962d9bdcae9c290270f0fade",
                   ((r"^ir/(.+)$", r"input/IR/\1"), (r"^vis/(.+)$", r"input/VI/\1"))),
    "M3FD": Source(manual=(
        "M3FD's ten pairs come from three repositories under other names: "
        "RollingPlain/SAGE_IVIF @ 377fdbe data/test/Ir and data/test/Vis (00000-00005), "
        "RollingPlain/CAF_IVIF @ bf12f26 data/ir and data/vi (00512, 01670, 03878), "
        "JinyuanLiu-CV/TarDAL @ 6a9edd7 assets/sample/s1/ir and vi (M3FD_00471 -> 00471); or the full M3FD "
        "release (https://github.com/JinyuanLiu-CV/TarDAL). Put each pair's images at DIR/ir/<id>.png and "
        "DIR/vis/<id>.png, then run the same command again to check them.")),
}


def manifests_folder() -> str:
    """The repository's data_manifests/ folder (beside the package's sources)."""
    import crossfuse

    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(crossfuse.__file__))), "data_manifests")


def bundled(name: str) -> Manifest:
    """A manifest by path, or by the name of one of data_manifests/*.json; a ManifestError
    listing the names otherwise."""
    if os.path.isfile(name):
        return _manifest.load(name)
    folder = manifests_folder()
    path = os.path.join(folder, f"{name}.json")
    if not os.path.isfile(path):
        known = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".json")) if os.path.isdir(folder) else []
        choices = ", ".join(known) or "(none found here: give a manifest's path)"
        raise ManifestError(f"no manifest {name!r}: give a manifest file, or one of {choices}.")
    return _manifest.load(path)


def users() -> dict[str, list[str]]:
    """For each dataset name, the bundled manifests (by name) that list it."""
    folder, found = manifests_folder(), {}
    for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if f.endswith(".json"):
            found.setdefault(source_of(_manifest.load(os.path.join(folder, f)))[0], []).append(f[:-5])
    return found


def source_of(dataset: Manifest) -> tuple[str, Source | None]:
    """The dataset's name (its root folder's) and its :class:`Source` (None when unknown)."""
    name = os.path.basename(os.path.normpath(dataset.root))
    return name, SOURCES.get(name)


@dataclasses.dataclass(frozen=True)
class FetchResult:
    fetched: int
    kept: int
    missing: tuple[str, ...]  # files of a manual dataset not yet in place


def _download(url: str, timeout: float) -> bytes:
    if "://" not in url:
        with open(url, "rb") as fh:
            return fh.read()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http(s) and file URLs only)
            return response.read()
    except urllib.error.HTTPError as exc:
        raise ManifestError(f"cannot fetch {url}: HTTP {exc.code} {exc.reason}.") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ManifestError(f"cannot fetch {url}: {reason}. Check the connection (or --from), then run the same "
                            "command again: the files already checked are kept.") from exc


def fetch(dataset: Manifest, to: str, *, base: str | None = None, timeout: float = 60.0,
          progress: Progress = no_progress) -> FetchResult:
    """Fetch every file ``dataset`` lists into ``to`` (its manifest paths kept), each checked
    against the sha256 the manifest records. ``base``: a mirror laid out as the manifest (URL or
    folder) instead of the dataset's source. A file whose digest differs is refused, naming it
    and both digests; nothing is written under its name."""
    name, source = source_of(dataset)
    if base is None and source is None:
        raise ManifestError(f"{dataset.origin}: crossfuse knows no source for the dataset {name!r}; pass --from with "
                            f"a URL or folder laid out as the manifest ({', '.join(SOURCES)} are known).")
    files = [(rel, digest) for pair in dataset.pairs
             for rel, digest in ((pair.ir, pair.ir_sha256), (pair.vis, pair.vis_sha256)) if rel]
    unrecorded = [rel for rel, digest in files if not digest]
    if unrecorded:
        raise ManifestError(f"{dataset.origin} records no sha256 for {len(unrecorded)} file(s) ({unrecorded[0]}, ...); "
                            "fetching needs them to check what arrives.")
    fetched = kept = 0
    missing: list[str] = []
    manual = base is None and bool(source.manual)
    with progress(f"fetch {name}", len(files)) as advance:
        for rel, digest in files:
            target = os.path.join(to, rel)
            present = file_sha256(target) if os.path.isfile(target) else None
            if present == digest:
                kept += 1
            elif manual:
                if os.path.exists(target):
                    raise ManifestError(f"{target} is not the file {dataset.origin} lists (sha256 {present}, "
                                        f"expected {digest}). Replace it with the original.")
                missing.append(target)
            else:
                url = f"{base.rstrip('/')}/{rel}" if base else source.url(rel)
                data = _download(url, timeout)
                got = hashlib.sha256(data).hexdigest()
                if got != digest:
                    raise ManifestError(f"{url} is not the file {dataset.origin} lists as {rel} (sha256 {got}, "
                                        f"expected {digest}); it was not kept. The source changed, or --from points "
                                        "at other data.")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with atomic.replacing(target) as tmp:
                    with open(tmp, "wb") as fh:
                        fh.write(data)
                fetched += 1
            advance(1, rel)
    return FetchResult(fetched=fetched, kept=kept, missing=tuple(missing))
