"""The CSRF token in templates, so an HTML form needs no JavaScript.

``install(templates)`` adds two Jinja2 globals to Starlette's ``Jinja2Templates`` (or to any
``jinja2.Environment``; Flask's ``AuthMW`` does it for the app's ``jinja_env`` itself):
``csrf_token()``, the token of the request's session, and ``csrf_field()``, a
hidden ``<input>`` that carries it in the middleware's ``csrf_field`` (``csrf_token`` by
default). Both read the ``request`` of the template's context (Starlette's ``TemplateResponse``
and Flask put it there) and start an anonymous session when the visitor has none, so a login
form is protected before anyone logs in. jinja2 is imported only by :func:`install`: it is not
a dependency of authmw.
"""

from __future__ import annotations

import html
from typing import Any

from . import asgi, wsgi

__all__ = ["csrf_field", "csrf_token", "install"]


def _token_and_field(request: Any) -> tuple[str, str]:
    """The CSRF token of a Starlette request (``.scope``) or a WSGI/Flask one (``.environ``),
    and the form field the middleware reads it from."""
    asgi_request = isinstance(getattr(request, "scope", None), dict)
    state = asgi._state(request) if asgi_request else wsgi._request(request.environ)[1]
    return state.edge.csrf_token(state), state.edge.options.csrf_field


def csrf_token(request: Any) -> str:
    """The CSRF token of ``request`` (Starlette's ``Request`` or Flask's ``request``)."""
    return _token_and_field(request)[0]


def csrf_field(request: Any) -> str:
    """A hidden ``<input>`` holding the CSRF token of ``request``, as HTML text."""
    token, field = _token_and_field(request)
    return f'<input type="hidden" name="{html.escape(field)}" value="{html.escape(token)}">'


def install(templates: Any) -> None:
    """Add the ``csrf_token()`` and ``csrf_field()`` globals to a Jinja2 environment, or to
    the environment of Starlette's ``Jinja2Templates`` (its ``env``).

    Raises ``ImportError`` when jinja2 is not installed.
    """
    import jinja2
    import markupsafe

    environment: jinja2.Environment = getattr(templates, "env", templates)

    @jinja2.pass_context
    def token_global(context: jinja2.runtime.Context) -> str:
        return csrf_token(context["request"])

    @jinja2.pass_context
    def field_global(context: jinja2.runtime.Context) -> markupsafe.Markup:
        return markupsafe.Markup(csrf_field(context["request"]))  # noqa: S704 -- escaped above

    environment.globals["csrf_token"] = token_global
    environment.globals["csrf_field"] = field_global
