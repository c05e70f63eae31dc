"""The reader side never imports the writer's heavy machinery (STYLE: writer and reader are separate)."""

import subprocess
import sys

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'dask', 'distributed', 'faiss'} or name.startswith('crossfuse.align'):
            raise ImportError(f'fusion must not import {name}')
sys.meta_path.insert(0, Block())
import crossfuse.fusion, crossfuse.schema, crossfuse.manifest, crossfuse.imageio
print('ok')
"""


def test_fusion_imports_without_dask_faiss_or_align():
    r = subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_the_blocker_does_block():
    r = subprocess.run([sys.executable, "-c", BLOCK.replace("import crossfuse.fusion", "import crossfuse.align")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "must not import" in r.stderr


def test_align_imports_without_torch_or_fusion():
    code = BLOCK.replace("{'dask', 'distributed', 'faiss'}", "{'torch'}").replace(
        "name.startswith('crossfuse.align')", "name.startswith('crossfuse.fusion')").replace(
        "import crossfuse.fusion, crossfuse.schema", "import crossfuse.align, crossfuse.cli.align, crossfuse.schema")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
