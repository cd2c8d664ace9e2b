"""Moved to :mod:`authmw.middleware.wsgi`; this alias warns and goes away in the next release."""

from __future__ import annotations

from ._moved import moved

__getattr__ = moved("authmw.wsgi", "authmw.middleware.wsgi")
