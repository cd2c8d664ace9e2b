"""The documentation site builds with `mkdocs build --strict` (broken links and bad references
fail it), and its API reference documents the public face."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_site_builds_strict(tmp_path: Path) -> None:
    """Every page and every `::: module` reference renders without a warning."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reference = (tmp_path / "reference" / "framework" / "index.html").read_text()
    for name in ("AuthFramework", "register_user", "verify", "refresh", "revoke_user"):
        assert name in reference, name


def test_every_page_is_in_the_nav() -> None:
    """No page in docs/ is left out of the site's navigation."""
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    missing = [p for p in pages if p not in nav]
    assert not missing, missing
