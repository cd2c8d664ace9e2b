"""Both middlewares behind one interface, called with raw methods and header bytes.

The CSRF and hostile-header tests check one edge decision on the ASGI and the WSGI front
alike. A :class:`Front` calls the middleware directly (an ASGI scope, a WSGI environ), so a
method is passed as spelled ("post", "PROPFIND") and a header value as any bytes a server may
hand over (latin-1 for WSGI), which an HTTP client library would normalise or refuse.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from authmw import AuthConfig, AuthFramework, AuthMiddleware
from authmw.middleware.wsgi import WSGIAuthMiddleware
from authmw.storage import AuthStorage
from tests.support.wsgi_apps import Called, environ_for

T = TypeVar("T")

FRONTS = ["asgi", "wsgi"]


def _principal(user: Any) -> bytes:
    return json.dumps({"authenticated": user.is_authenticated, "user": user.display_name}).encode()


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reports the principal for any method and path."""
    body = _principal(scope["user"])
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Reports the principal for any method and path."""
    start_response("200 OK", [("Content-Type", "application/json")])
    return [_principal(environ["authmw.user"])]


class Answer:
    """What a front answered: status, headers (lower-case names) and the JSON body."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = [(k.lower(), v) for k, v in headers]
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def cookies(self) -> dict[str, str]:
        """The cookies the answer sets (name -> value)."""
        jar = {}
        for name, value in self.headers:
            if name == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                jar[key] = val
        return jar


class Front:
    """One middleware (``kind`` "asgi" or "wsgi") over ``storage`` with ``config``."""

    def __init__(self, kind: str, storage: AuthStorage, config: AuthConfig, **options: Any):
        self.kind = kind
        self.auth = AuthFramework(storage, config)
        self._runner: asyncio.Runner | None = None
        self._wsgi: WSGIAuthMiddleware | None = None
        if kind == "asgi":
            self._runner = asyncio.Runner()
            self._asgi = AuthMiddleware(asgi_app, self.auth, lifespan=False, **options)
        else:
            self._wsgi = WSGIAuthMiddleware(wsgi_app, self.auth, **options)
        self.middleware: Any = self._asgi if kind == "asgi" else self._wsgi

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a framework call on the loop the middleware uses."""
        if self._runner is not None:
            return self._runner.run(coro)
        assert self._wsgi is not None
        return self._wsgi.run(coro)

    def request(self, method: str, headers: dict[str, bytes], path: str = "/anything") -> Answer:
        """Call the middleware with this method and these raw header values."""
        if self._runner is not None:
            return self._runner.run(self._asgi_call(method, path, headers))
        environ = environ_for(
            path,
            method,
            **{k.replace("-", "_"): v.decode("latin-1") for k, v in headers.items()},
        )
        called = Called(self._wsgi, environ)
        return Answer(called.code, called.headers, called.body)

    async def _asgi_call(self, method: str, path: str, headers: dict[str, bytes]) -> Answer:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v) for k, v in headers.items()],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 443),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self._asgi(scope, receive, send)
        start = sent[0]
        headers_out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return Answer(start["status"], headers_out, body)

    def close(self) -> None:
        """Close the framework (and the WSGI loop)."""
        if self._runner is not None:
            self._runner.run(self.auth.close())
            self._runner.close()
        elif self._wsgi is not None:
            self._wsgi.close()
