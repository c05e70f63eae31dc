"""Issue 30 FAIL 6: --drop-low-contrast that leaves no patch is one clear line, leaves no
unfinished store, and the same build without the flag then runs; an unfinished store of other
settings is refused naming the setting that differs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from crossfuse import manifest
from crossfuse.align import BuildParams, build, pack
from crossfuse.align.scan import NothingLeftError
from tests.helpers import SAMPLE_TARGET


@pytest.fixture
def flat(tmp_path):
    root = tmp_path / "flat"
    (root / "ir").mkdir(parents=True)
    (root / "vis").mkdir()
    for i in range(3):
        Image.fromarray(np.full((200, 260), 120 + i, np.uint8)).save(root / "ir" / f"{i}.png")
        Image.fromarray(np.full((200, 260, 3), 90 + i, np.uint8)).save(root / "vis" / f"{i}.png")
    return manifest.load(str(root))


def test_no_patch_left_is_one_line_and_leaves_nothing(tmp_path, flat, engine):
    out = tmp_path / "c.zarr"
    params = BuildParams(patch=64, stride=64, k=4, drop_low_contrast=True)
    with pytest.raises(NothingLeftError, match="--drop-low-contrast left no patch of .*all 36 were low-contrast"):
        build(target=manifest.load(str(SAMPLE_TARGET)), aux=flat, out=str(out), params=params, engine=engine)
    assert not out.exists()
    with pytest.raises(NothingLeftError, match="left no patch"):
        pack(dataset=flat, out=str(tmp_path / "p.zarr"), params=params, engine=engine)
    assert not (tmp_path / "p.zarr").exists()
    summary = build(target=manifest.load(str(SAMPLE_TARGET)), aux=flat, out=str(out),
                    params=BuildParams(patch=64, stride=64, k=4), engine=engine)
    assert summary.record.counts.patches == 4


def test_an_unfinished_store_of_other_settings_names_the_setting():
    from crossfuse.align.store import _differences

    before = {"params": {"k": 4, "drop_low_contrast": True}, "aux": "x"}
    now = {"params": {"k": 4, "drop_low_contrast": False}, "aux": "x"}
    assert _differences(before, now) == "params.drop_low_contrast: True there, False now"
