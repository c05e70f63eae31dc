"""Issue 30 (WEAK): ``s3://`` without credentials was a botocore traceback, and pack left an
unfinished store. Now: one line saying what to set, nothing written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from crossfuse.cli.align import main
from tests.helpers import REPO


def test_pack_to_s3_without_credentials(s3, monkeypatch):
    import fsspec

    endpoint = fsspec.config.conf["s3"]["endpoint_url"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no wait for an instance's metadata service
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    r = CliRunner().invoke(main, ["pack", "-m", str(REPO / "data_manifests" / "sample-target-test.json"),
                                  "--out", "s3://crossfuse/x.zarr", "-q"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "credentials" in r.output and "AWS_ACCESS_KEY_ID" in r.output and "Traceback" not in r.output, r.output
    assert s3.ls("crossfuse") == []  # nothing left in the bucket
