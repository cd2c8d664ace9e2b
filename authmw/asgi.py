"""Moved to :mod:`authmw.middleware.asgi`; this alias warns and goes away in the next release."""

from __future__ import annotations

from ._moved import moved

__getattr__ = moved("authmw.asgi", "authmw.middleware.asgi")
