"""Moved to :mod:`authmw.middleware.principal`; this alias warns, and goes in the next release."""

from __future__ import annotations

from ._moved import moved

__getattr__ = moved("authmw.principal", "authmw.middleware.principal")
