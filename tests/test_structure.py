"""Code shape the project holds itself to: no function in the package longer than 60 lines."""

import ast
from pathlib import Path

from tests.helpers import REPO

LIMIT = 60


def test_no_function_is_longer_than_60_lines():
    long = []
    for folder in ("core", "align", "fusion", "cli", "experiment", "corpus"):
        for path in sorted((REPO / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > LIMIT:
                        long.append(f"{Path(folder) / path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these: " + ", ".join(long)
