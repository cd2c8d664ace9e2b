"""Moved to :mod:`authmw.middleware._cookies`; this alias warns, and goes in the next release."""

from __future__ import annotations

from ._moved import moved

__getattr__ = moved("authmw.sessions", "authmw.middleware._cookies")
