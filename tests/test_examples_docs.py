"""Every file in examples/ and every Python block in docs/ runs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
DOC_BLOCKS = [
    pytest.param(match.group(1), id=f"{doc.name}:{text[: match.start()].count(chr(10)) + 1}")
    for doc in sorted((ROOT / "docs").glob("*.md"))
    for text in [doc.read_text()]
    for match in BLOCK.finditer(text)
]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: Path) -> None:
    """The example exits 0 and prints something."""
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


@pytest.mark.parametrize("source", DOC_BLOCKS)
async def test_doc_block_runs(source: str) -> None:
    """The documentation block runs as written (top-level await allowed)."""
    code = compile(source, "<doc>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, object] = {"__name__": "__doc_block__"}
    result = eval(code, namespace)  # noqa: S307 - our own documentation
    if isinstance(result, types.CoroutineType):
        await result
