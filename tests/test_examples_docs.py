"""Every file in examples/ and every Python block in docs/ and the README runs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.support.cli_helpers import postgres_at_url, redis_at_url  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
DOC_BLOCKS = [
    pytest.param(match.group(1), id=f"{doc.name}:{text[: match.start()].count(chr(10)) + 1}")
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for text in [doc.read_text()]
    for match in BLOCK.finditer(text)
]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: Path) -> None:
    """The example exits 0 and prints something."""
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=280, cwd=ROOT
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


async def test_readme_app_answers() -> None:
    """The README's "Use" app serves: 401 without credentials, the user with a token."""
    import httpx

    source = BLOCK.search((ROOT / "README.md").read_text())
    assert source is not None
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(source.group(1), "<README>", "exec"), namespace)  # noqa: S102 - our own README
    app, auth = namespace["app"], namespace["auth"]
    async with auth:  # type: ignore[attr-defined]
        await auth.register_user("readme-user", "a long password")  # type: ignore[attr-defined]
        token = await auth.authenticate("readme-user", "a long password")  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/me")).status_code == 401
            headers = {"Authorization": f"Bearer {token.access_token}"}
            answer = await client.get("/me", headers=headers)
    assert answer.status_code == 200 and answer.json()["user"] == "readme-user"


@pytest.mark.parametrize("example", ["starlette_app.py", "fastapi_app.py"])
async def test_example_runs_on_redis_and_postgres(
    example: str,
    redis_at_url: tuple[str, object],  # noqa: F811 - the fixture imported above
    postgres_at_url: tuple[str, object],  # noqa: F811 - the fixture imported above
) -> None:
    """The Starlette and FastAPI examples' self-tests (anonymous cart, form login with CSRF,
    password-less sign-up, the error handlers) pass on Redis and on PostgreSQL too."""
    for url, _ in (redis_at_url, postgres_at_url):
        result = subprocess.run(  # noqa: ASYNC221 - waiting for the example is the test
            [sys.executable, str(ROOT / "examples" / example)],
            capture_output=True,
            text=True,
            timeout=280,
            cwd=ROOT,
            env={**os.environ, "AUTHMW_STORAGE_URL": url},
        )
        assert result.returncode == 0, (url.split("?")[0], result.stderr)
