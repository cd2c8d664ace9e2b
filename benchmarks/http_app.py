"""The apps uvicorn serves for the HTTP matrix (:mod:`benchmarks.http_matrix`).

Factories for ``uvicorn --factory``, configured by environment variables the matrix sets:
``AUTHMW_BENCH_REDIS_URL`` (with ``key_prefix`` in its query), ``AUTHMW_BENCH_SECRET_KEY``.
Both apps answer ``GET /`` with the user's name and the worker's process id, so the bodies have
the same size and a client can tell which worker answered.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from authmw import AuthConfig, AuthFramework, AuthMiddleware, storage_from_url

__all__ = ["authmw_cached_redis", "bare"]

_PID = str(os.getpid())


async def _anyone(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"alice {_PID}")


async def _whoami(request: Request) -> PlainTextResponse:
    user = request.user
    name = user.display_name if user.is_authenticated else "anonymous"
    return PlainTextResponse(f"{name} {_PID}")


def bare() -> Starlette:
    """The same answer with no middleware: what Starlette and uvicorn cost alone."""
    return Starlette(routes=[Route("/", _anyone)])


def authmw_cached_redis() -> Starlette:
    """authmw bearer (and session) authentication on Redis behind the local cache, the way the
    design document's example sets it up."""
    storage = storage_from_url(os.environ["AUTHMW_BENCH_REDIS_URL"], cache=True)
    auth = AuthFramework(storage, AuthConfig(secret_key=os.environ["AUTHMW_BENCH_SECRET_KEY"]))
    return Starlette(
        routes=[Route("/", _whoami)], middleware=[Middleware(AuthMiddleware, auth=auth)]
    )
