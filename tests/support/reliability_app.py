"""The reliability suite's Flask app as a module-level WSGI app, for ``gunicorn``
(``gunicorn tests.support.reliability_app:flask_app``): a fresh in-memory storage per process."""

from __future__ import annotations

from authmw import AuthFramework, InMemoryStorage
from tests.support.reliability import flask_app as _build
from tests.support.reliability import make_config

flask_app = _build(AuthFramework(InMemoryStorage(), make_config()))
