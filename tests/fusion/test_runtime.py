import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_memory_applies_on_glibc():
    code = ("import platform; from crossfuse.fusion.runtime import keep_freed_memory; "
            "print(platform.libc_ver()[0], keep_freed_memory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["glibc", "True"] or out[0] != "glibc"
