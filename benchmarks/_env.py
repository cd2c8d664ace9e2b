"""The benchmark's own virtualenv, ``.venv-bench``, and wrk: set up before anything is imported.

Standard library only: this runs under whatever ``python3`` started ``python -m benchmarks``.
The virtualenv holds authmw installed editable with its extras plus the peers listed in
``benchmarks/requirements.txt`` (PyPI only). A stamp file remembers the digest of that list and
of ``pyproject.toml``; the packages are installed again only when either changes. The process
then re-executes itself with the virtualenv's interpreter. wrk (the HTTP load generator) comes
from Debian's packages and is installed with apt-get when missing and we are root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ROOT", "VENV", "bootstrap", "ensure_wrk"]

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-bench"
REQUIREMENTS = Path(__file__).resolve().with_name("requirements.txt")
STAMP = VENV / ".requirements.sha256"
PYTHON = VENV / "bin" / "python"


def _say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def _digest() -> str:
    """What the installed packages depend on: the requirement list and pyproject.toml.

    Not the launching interpreter's version: the virtualenv keeps the Python it was made with,
    and a launcher of another version must not make every run reinstall.
    """
    h = hashlib.sha256()
    for path in (REQUIREMENTS, ROOT / "pyproject.toml"):
        h.update(path.read_bytes())
    return h.hexdigest()


def _inside_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _install(digest: str) -> None:
    if not PYTHON.exists():
        _say(f"creating {VENV.name} with Python {sys.version.split()[0]}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    _say(f"installing authmw (editable) and the peers from {REQUIREMENTS.name} into {VENV.name}")
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[all]", "-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(digest + "\n")


def ensure_wrk() -> str | None:
    """The path of wrk, installing Debian's package when missing and running as root."""
    found = shutil.which("wrk")
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    _say("installing wrk from Debian's packages (apt-get)")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if (
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False, **quiet
        ).returncode
        != 0
    ):
        # A fresh machine has no package lists yet: fetch them once and try again.
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False, **quiet)
    return shutil.which("wrk")


def bootstrap(argv: Sequence[str]) -> None:
    """Make sure we run inside an up-to-date ``.venv-bench``; re-exec into it if not.

    ``--no-setup`` skips all of it and runs with the current interpreter as it is.
    """
    if "--no-setup" in argv:
        return
    digest = _digest()
    installed = STAMP.read_text().strip() if STAMP.exists() else ""
    if installed != digest:
        _install(digest)
    if _inside_venv():
        return
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    sys.stdout.flush()
    os.execve(str(PYTHON), [str(PYTHON), "-m", "benchmarks", *argv], env)
