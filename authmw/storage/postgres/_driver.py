"""The PostgreSQL driver boundary: error translation and one-off connections.

This is the one place where asyncpg and socket errors become authmw errors.

Every PostgreSQL code path (queries, pool, migrations, backup) catches :data:`DRIVER_ERRORS`
and raises ``translate(...) from exc``, so callers only ever see ``StorageUnavailable``,
``ConfigurationError`` (settings the server rejects when the storage opens) or
``InvalidInput`` (a value PostgreSQL refuses, which retrying cannot fix), with the driver's
error chained as ``__cause__``. Messages name the server as ``host:port/db`` and have every
secret of the URL scrubbed out (:func:`authmw.storage._urls.secrets_of` says what is secret).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import asyncpg
import asyncpg.exceptions

from ..._time import seconds
from ...errors import AuthmwError, ConfigurationError, InvalidInput, StorageUnavailable
from .._urls import scrub, secrets_of
from ._config import URL_OPTION_NAMES, PostgresConfig

__all__ = [
    "BACKEND",
    "BULK_TIMEOUT",
    "CONNECTION_LOST",
    "DRIVER_ERRORS",
    "connect_once",
    "translate",
]

BACKEND = "postgres"

# Everything the driver or the network raises. TimeoutError covers asyncpg's command timeout
# and our own wait for a pooled connection.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions._base.InternalClientError,
    OSError,
    TimeoutError,
)

# Errors after which the connection is unusable and the same statement may succeed on a fresh
# one: the server went away (restart, failover, pg_terminate_backend) between two uses of a
# pooled connection. InternalClientError is asyncpg's protocol state machine tripping over a
# server's unsolicited FATAL message that arrived just before the socket's end did.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions._base.InternalClientError,
    ConnectionResetError,
    BrokenPipeError,
)

_SCHEMA_HINT = (
    "the authmw tables are missing; run `authmw migrate-schema URL` "
    "or open with migration_mode=auto"
)


def translate(
    exc: BaseException,
    operation: str,
    *,
    target: str,
    secrets: Sequence[str] = (),
    opening: bool = False,
    timeout: float | None = None,
    acquiring: bool = False,
) -> AuthmwError:
    """The authmw error for driver error ``exc`` raised during ``operation``.

    ``opening``: the storage is being opened, so settings the server rejects (credentials,
    database name, TLS trust) are a ``ConfigurationError``. ``acquiring``: ``exc`` happened
    while waiting for a pooled connection. ``secrets`` (see :func:`secrets_of`) are masked in
    the message. The caller raises the result ``from exc``.
    """
    detail = scrub(f"{type(exc).__name__}: {exc}".rstrip(": "), secrets)
    config_problem: str | None = None
    if isinstance(exc, asyncpg.InvalidPasswordError):
        config_problem = (
            "authentication failed (wrong user or password; fix them in the URL, or the "
            "role's password on the server)"
        )
    elif isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        config_problem = (
            "the server refused this user or host (create the role, or allow it in pg_hba.conf)"
        )
    elif isinstance(exc, asyncpg.InvalidCatalogNameError):
        config_problem = (
            "the database does not exist (create it: CREATE DATABASE ..., or fix the "
            "name in the URL)"
        )
    elif isinstance(exc, ssl.SSLCertVerificationError):
        config_problem = "TLS: the server certificate is not trusted (check ca_cert_path)"
    elif isinstance(exc, ssl.SSLError):
        config_problem = "TLS handshake failed"
    elif isinstance(exc, ConnectionError) and "SSL" in str(exc):
        config_problem = "TLS: the server does not offer SSL"
    elif isinstance(exc, asyncpg.UndefinedObjectError) and "configuration parameter" in str(exc):
        # asyncpg sends URL options it does not know to the server as settings.
        config_problem = (
            "a URL query option is neither authmw's nor a server setting (fix its name; "
            f"authmw's are {', '.join(sorted(URL_OPTION_NAMES))})"
        )
    elif isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        config_problem = "invalid connection settings"

    if config_problem is not None:
        if opening:
            return ConfigurationError(f"postgres at {target}: {config_problem}: {detail}")
        return StorageUnavailable(BACKEND, operation, f"{config_problem}: {detail}")
    if isinstance(exc, TimeoutError):
        if acquiring:
            return StorageUnavailable(
                BACKEND,
                operation,
                f"no pooled connection became available within {timeout:g} s (pool exhausted,"
                " or a new connection took that long)"
                if timeout is not None
                else "timed out waiting for a pooled connection",
            )
        limit = f" after {timeout:g} s" if timeout is not None else ""
        return StorageUnavailable(BACKEND, operation, f"timed out{limit} ({target})")
    if isinstance(exc, asyncpg.UndefinedTableError):
        return StorageUnavailable(BACKEND, operation, f"{_SCHEMA_HINT}: {detail}")
    if isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)):
        # The server understood and refused this value: not an outage, retrying cannot help.
        return InvalidInput(operation, scrub(str(exc), secrets))
    if isinstance(exc, OSError):
        return StorageUnavailable(BACKEND, operation, f"connection to {target} failed: {detail}")
    return StorageUnavailable(BACKEND, operation, f"{detail} ({target})")


BULK_TIMEOUT = 300.0
"""The least time a statement of a migration, backup or restore may take (seconds): those
run off the request path, over whole tables, and a migration may wait for another instance's;
``timeout`` bounds them when it is longer."""


async def connect_once(
    config: PostgresConfig, operation: str, *, opening: bool = True, bulk: bool = False
) -> Any:
    """A single connection outside the pool (migrations, backup, restore, LISTEN), with the
    config's TLS and timeouts (``bulk``: statements may take :data:`BULK_TIMEOUT`). Settings
    the server rejects raise ``ConfigurationError`` when ``opening`` (else
    ``StorageUnavailable``, for callers that retry)."""
    timeout = seconds(config.timeout, "timeout")
    try:
        args = config.pool_arguments()  # inside: loading certificate files may fail
        command_timeout = args["command_timeout"]
        return await asyncpg.connect(
            dsn=args["dsn"],
            timeout=args["timeout"],
            command_timeout=max(command_timeout, BULK_TIMEOUT) if bulk else command_timeout,
            ssl=args["ssl"],
            server_settings=args["server_settings"],
            statement_cache_size=0,
        )
    except DRIVER_ERRORS as exc:
        raise translate(
            exc,
            operation,
            target=config.target,
            secrets=secrets_of([config.url]),
            opening=opening,
            timeout=timeout,
        ) from exc
