"""Each public module's ``__all__`` is what it exports; every public name is documented."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC_MODULES = [
    "authmw",
    "authmw.errors",
    "authmw.models",
    "authmw.config",
    "authmw.tokens",
    "authmw.passwords",
    "authmw.framework",
    "authmw.testing",
    "authmw.middleware",
    "authmw.middleware.asgi",
    "authmw.middleware.wsgi",
    "authmw.middleware.handlers",
    "authmw.middleware.principal",
    "authmw.integrations.fastapi",
    "authmw.integrations.flask",
    "authmw.integrations.starlette",
    "authmw.storage",
    "authmw.storage.base",
    "authmw.storage.memory",
    "authmw.storage.redis",
    "authmw.storage.postgres",
    "authmw.storage.cached",
    "authmw.storage.migration",
    "authmw.cli",
]

# Names a package face binds without exporting them: `from __future__ import annotations`
# and typing helpers.
_NOT_EXPORTS = {"annotations", "TYPE_CHECKING", "Any"}


def _is_face(module: object) -> bool:
    """A package ``__init__``: its job is to re-export what its package defines."""
    return str(getattr(module, "__file__", "")).endswith("__init__.py")


def _should_export(module: object) -> set[str]:
    name = module.__name__  # type: ignore[attr-defined]
    found = set()
    for attr, value in vars(module).items():
        if attr.startswith("_") or attr in _NOT_EXPORTS or inspect.ismodule(value):
            continue
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        home = value.__module__
        if home == name or (_is_face(module) and home.startswith(name + ".")):
            found.add(attr)  # defined here, or (a face) defined inside its package
    return found


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_what_the_module_exports(name: str) -> None:
    """``__all__`` lists every public name a package face binds, or an implementation module
    defines, and names nothing the module lacks."""
    module = importlib.import_module(name)
    declared = set(module.__all__)
    assert len(declared) == len(module.__all__), "duplicates in __all__"
    lazy = set(getattr(module, "_LAZY", {}))  # resolved on first access (driver-backed)
    assert declared - lazy <= set(vars(module)), declared - lazy - set(vars(module))
    assert _should_export(module) - declared == set()


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_names_have_docstrings(name: str) -> None:
    """Every class and function in ``__all__`` says what it does."""
    module = importlib.import_module(name)
    for attr in module.__all__:
        value = getattr(module, attr)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name}.{attr} has no docstring"
