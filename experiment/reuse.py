"""Identical training runs are trained once. Two variants whose runs at a seed would see the same
patches in the same chunks, with the same weights, settings and seed, train the same network: the
second reuses the first's fused images and scores instead of spending its compute again (a
selection can take exactly the patches another takes: on RoadScene x MSRS, ``--select match``
takes Top-K's 800). What counts as "the same" is :func:`inputs_digest`: the training settings with
the seed, the corpus weights, and per corpus the shape and the recorded (size, sha256) of every
``vis`` and ``ir`` chunk, the only arrays the trainer reads. A corpus without chunk digests (made
before crossfuse recorded them) is never matched. The reused run's folder holds ``reused.json``
(where from and why) and copies of the fused images and scores, so results and plots read it as
any other run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

from crossfuse.digest import json_sha256
from crossfuse.experiment.layout import Layout, write_text
from crossfuse.experiment.spec import Spec, VariantSpec
from crossfuse.schema import open_corpus

#: The note a reused run's folder holds.
NOTE = "reused.json"


def inputs_digest(variant: VariantSpec, seed: int, layout: Layout) -> str | None:
    """The digest of everything a run of ``variant`` at ``seed`` trains on (see the module
    docstring); None when a corpus has no chunk digests."""
    corpora = []
    for name in variant.corpora:
        group, record = open_corpus(layout.corpus(name))
        if not record.chunks or "vis" not in record.chunks or "ir" not in record.chunks:
            return None
        corpora.append({f: {"shape": list(group[f].shape), "chunks": [list(c) for c in record.chunks[f]]}
                        for f in ("vis", "ir")})
    settings = dataclasses.asdict(dataclasses.replace(variant.config, seed=seed))
    return json_sha256({"train": settings, "weights": list(variant.weights), "corpora": corpora})


def finished(spec: Spec, layout: Layout, variant: str, seed: int) -> bool:
    """Whether the run has a score file for every test set."""
    return all(os.path.exists(layout.scores(variant, seed, t)) for t in spec.tests)


def twin(spec: Spec, variant: VariantSpec, seed: int, layout: Layout) -> tuple[str, str] | None:
    """An earlier variant of the spec (in its order) whose run at ``seed`` is finished, itself
    trained (not reused), and trained on exactly what ``variant``'s would be, with that
    :func:`inputs_digest`; None if there is none."""
    mine = None
    for other in spec.variants.values():
        if other.name == variant.name:
            return None
        if not finished(spec, layout, other.name, seed) or os.path.exists(
                os.path.join(layout.run(other.name, seed), NOTE)):
            continue
        if mine is None:
            mine = inputs_digest(variant, seed, layout)
            if mine is None:
                return None
        if inputs_digest(other, seed, layout) == mine:
            return other.name, mine
    return None


def reuse(spec: Spec, variant: VariantSpec, seed: int, layout: Layout, source: str, digest: str) -> None:
    """Copy ``source``'s fused images and scores at ``seed`` into ``variant``'s run folder and
    write the note (``digest``: the shared :func:`inputs_digest`). The note is written last, so
    that a killed copy is simply done again."""
    run, theirs = layout.run(variant.name, seed), layout.run(source, seed)
    for test in spec.tests:
        shutil.copytree(layout.fused(source, seed, test), layout.fused(variant.name, seed, test), dirs_exist_ok=True)
    for test in spec.tests:
        os.makedirs(os.path.dirname(layout.scores(variant.name, seed, test)), exist_ok=True)
        shutil.copyfile(layout.scores(source, seed, test), layout.scores(variant.name, seed, test))
    write_text(os.path.join(run, NOTE), json.dumps(
        {"reused": theirs, "inputs_sha256": digest,
         "why": f"{variant.name} at seed {seed} trains on exactly what {source} does (the same patches in the same "
                "chunks, weights, settings and seed), so it would train the same network"}, indent=1) + "\n")


def read_note(path: str) -> dict:
    """A run's reuse note, or a ConfigError naming the file and what to do when it is damaged."""
    from crossfuse.errors import ConfigError

    try:
        with open(path) as fh:
            note = json.load(fh)
        if not isinstance(note, dict) or not isinstance(note.get("reused"), str):
            raise ValueError("it names no source run")
        return note
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{path} is damaged ({exc}); delete it and rerun: the run is then reused again, or "
                          "trained.") from None


def summary(spec: Spec, layout: Layout) -> str:
    """A Markdown paragraph naming every reused run and its source ("" when none)."""
    lines = []
    for variant in spec.variants:
        for seed in spec.seeds:
            path = os.path.join(layout.run(variant, seed), NOTE)
            if os.path.exists(path):
                source = os.path.basename(os.path.dirname(read_note(path)["reused"]))
                lines.append(f"- {variant} seed {seed}: the run of {source} (the same patches in the same chunks, "
                             "weights, settings and seed: the same network).")
    if not lines:
        return ""
    return "\n## Runs trained once and reused\n\n" + "\n".join(lines) + "\n"
