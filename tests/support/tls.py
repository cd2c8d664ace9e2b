"""The reliability suite's apps over TLS: uvicorn serving HTTPS (HTTP/1.1) and hypercorn serving
HTTP/2 (negotiated by ALPN), each on a free loopback port with a throwaway certificate, reached
by an httpx client that trusts only the throwaway CA.

An HTTP client library refuses some header bytes that the raw-socket client of
tests/support/reliability.py sends as given: :func:`sendable` says which, and how they are
sent instead (the hostile generators stay the same).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import cache
from typing import Any

import httpx
import trustme

from tests.support.reliability import Headers, Reply, _wait_listening, free_port, uvicorn_server

#: The host the certificate names and the servers listen on.
HOST = "127.0.0.1"

#: What a server front sends over: ``response.http_version`` must say so for every answer.
HTTP_VERSIONS = {"uvicorn-tls": "HTTP/1.1", "hypercorn-h2": "HTTP/2"}


@cache
def authority() -> trustme.CA:
    """The throwaway CA, made once per test process (its key lives only in memory)."""
    return trustme.CA()


def client_context() -> ssl.SSLContext:
    """A client context that trusts the throwaway CA and nothing else."""
    return ssl.create_default_context(cadata=authority().cert_pem.bytes().decode())


@contextmanager
def certificate_files() -> Iterator[tuple[str, str]]:
    """A certificate for 127.0.0.1 signed by the throwaway CA: (certificate chain, key) as
    temporary files, removed on exit (the servers read them once, at start)."""
    cert = authority().issue_cert(HOST)
    with ExitStack() as stack:
        chain = stack.enter_context(cert.private_key_and_cert_chain_pem.tempfile())
        key = stack.enter_context(cert.private_key_pem.tempfile())
        yield chain, key


@contextmanager
def hypercorn_server(app: Any, certfile: str, keyfile: str) -> Iterator[int]:
    """``app`` (ASGI) served by hypercorn over TLS, HTTP/2 offered first by ALPN, in a thread
    with its own loop on a free loopback port."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    port = free_port()
    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.certfile, config.keyfile = certfile, keyfile
    config.accesslog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        try:
            await serve(app, config, shutdown_trigger=stop.wait, mode="asgi")
        except* ssl.SSLError:
            # A connection hypercorn itself dropped (pgjones/hypercorn#329, see _send) fails
            # its TLS close; the shutdown gathers the connections and re-raises that here.
            # The server is stopping anyway: what it answered was checked by the tests.
            pass

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        _wait_listening(port)
        yield port
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


@contextmanager
def served(name: str, app: Any) -> Iterator[int]:
    """``app`` (ASGI) served over TLS by ``name``, one of :data:`HTTP_VERSIONS`: uvicorn
    (HTTPS, HTTP/1.1) or hypercorn (HTTP/2 by ALPN); yields the port."""
    with certificate_files() as (certfile, keyfile):
        if name == "uvicorn-tls":
            with uvicorn_server(app, ssl_certfile=certfile, ssl_keyfile=keyfile) as port:
                yield port
        else:
            with hypercorn_server(app, certfile, keyfile) as port:
                yield port


def client(name: str, **options: Any) -> httpx.Client:
    """An httpx client for the server ``name`` that trusts only the throwaway CA, speaking
    HTTP/2 to hypercorn."""
    return httpx.Client(
        verify=client_context(), http2=HTTP_VERSIONS[name] == "HTTP/2", timeout=60, **options
    )


def url(port: int, path: str) -> str:
    """The https URL of ``path`` on the loopback server at ``port``."""
    return f"https://{HOST}:{port}{path}"


def sendable(value: bytes) -> bytes:
    """``value`` as the HTTP/1.1 and HTTP/2 clients (h11, h2) let it out: NUL, CR, LF, VT and
    FF made spaces (the raw-socket client does the same with CR and LF, so the framing holds;
    h11 refuses them, HTTP/2 forbids NUL, CR and LF in a field) and surrounding spaces and tabs
    stripped (h2 strips them itself; h11 refuses them)."""
    for odd in (b"\x00", b"\r", b"\n", b"\x0b", b"\x0c"):
        value = value.replace(odd, b" ")
    return value.strip(b" \t")


#: Requests sent again on a fresh connection because the reused one had died (see _send), by
#: HTTP version and the error the first try met.
RESENT: Counter[tuple[str, str]] = Counter()


def _send(client: httpx.Client, request: httpx.Request, http_version: str) -> httpx.Response:
    """Send ``request``; once more on a fresh connection if the connection it went out on had
    died before the request could be written. Hypercorn 0.18 drops an HTTP/2 connection when a
    request body's DATA frame arrives after the app answered without reading it (a KeyError in
    its stream table, pgjones/hypercorn#329): the next request on that connection finds it
    closed. A browser resends such a request too; a request the server itself refuses to
    answer fails twice and counts as no answer."""
    try:
        return client.send(request)
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        RESENT[http_version, type(exc).__name__] += 1
        return client.send(request)


def httpx_caller(
    client: httpx.Client, port: int, http_version: str
) -> Callable[[str, str, Headers, bytes], Reply]:
    """Requests over ``client`` to https://127.0.0.1:``port``; each answer must have come over
    ``http_version``. Header values go out through :func:`sendable`, the method as spelled
    (httpx would upper-case it)."""

    def call(method: str, path: str, headers: Headers, body: bytes) -> Reply:
        request = client.build_request(
            method.upper(),
            url(port, path),
            headers=[(name, sendable(value)) for name, value in headers],
            content=body,
        )
        request.method = method
        try:
            response = _send(client, request, http_version)
        except httpx.TransportError:
            return Reply(0, [], b"")  # the server closed without answering: no 500 either
        finally:
            client.cookies.clear()  # a front sends only the headers it is given
        assert response.http_version == http_version, response.http_version
        return Reply(
            response.status_code,
            [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers.raw],
            response.content,
        )

    return call
