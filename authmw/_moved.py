"""Makes the aliases of modules that moved: they keep working for one release, with a warning.

``authmw.asgi``, ``authmw.wsgi``, ``authmw.principal`` and ``authmw.sessions`` moved into
:mod:`authmw.middleware`. Each old module is a stub whose module ``__getattr__`` (PEP 562) is
made here: it looks the name up in the new module and warns with ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["moved"]


def moved(old: str, new: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old`` that serves names from ``new`` and warns."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - PEP 562's name
        # __all__ too, so that ``from old import *`` gives the new module's names (each warns)
        # rather than this stub's own.
        if name.startswith("__") and name != "__all__":
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(new), name)
        warnings.warn(
            f"{old}.{name} moved to {new}.{name}; the {old} alias goes away in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__
