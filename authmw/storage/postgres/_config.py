"""Settings of the PostgreSQL backend: config classes, URL options, SSL, pool arguments.

Private: the public names are re-exported by :mod:`authmw.storage.postgres`. Nothing here
imports asyncpg, so a config can be built and checked without the driver.
"""

from __future__ import annotations

import difflib
import enum
import re
import ssl
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..._time import Duration, seconds
from ...errors import ConfigurationError
from .._urls import backend_for, parse_url, redact_url, unknown_option
from ..base import WAITERS_PER_CONNECTION

__all__ = [
    "SSL_MODES",
    "PostgresConfig",
    "PostgresMigrationMode",
    "PostgresOptimization",
    "PostgresSSLConfig",
    "split_url_options",
]

# Lower-case letters, digits and underscores only: every table and index name is the prefix
# followed by a fixed suffix, spliced into SQL unquoted, so the prefix must be a plain
# identifier. 32 characters leave room for the longest suffix under PostgreSQL's 63-byte limit.
_PREFIX_RE = re.compile(r"[a-z_][a-z0-9_]{0,31}")

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
"""libpq's ``sslmode`` values, weakest first. ``disable`` is plain text; ``allow`` and
``prefer`` may end up plain; ``require`` encrypts without authenticating the server (unless a
root certificate is given, then as ``verify-ca``); ``verify-ca`` checks the certificate chain
and ``verify-full`` the host name too."""
_ENCRYPTED = ("require", "verify-ca", "verify-full")


class PostgresMigrationMode(enum.Enum):
    """What :meth:`PostgresStorage.open` does about the schema version.

    ``AUTO`` applies the missing migrations under an advisory lock (several instances may start
    at once). ``STRICT`` refuses to open unless the schema is exactly at the version this
    authmw expects. ``MANUAL`` checks nothing; ``authmw migrate-schema URL`` applies it.
    """

    AUTO = "auto"
    STRICT = "strict"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class PostgresSSLConfig:
    """TLS settings (certificate files; ``PostgresConfig.sslmode`` may name the mode).

    ``require_ssl`` refuses plain connections (``False``: libpq's ``prefer``, TLS is tried and
    plain is accepted). ``ca_cert_path`` verifies the server's certificate chain *and* host name
    against that CA (libpq's ``verify-full``; ``sslmode="verify-ca"`` checks the chain only);
    without it the connection is encrypted but the server is not authenticated (``require``).
    ``client_cert_path``/``client_key_path`` present a client certificate (for ``cert``
    authentication). Paths must exist when the storage is built.
    """

    require_ssl: bool = True
    ca_cert_path: str | None = None
    client_cert_path: str | None = None
    client_key_path: str | None = None

    def __post_init__(self) -> None:
        for name in ("ca_cert_path", "client_cert_path", "client_key_path"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigurationError(f"ssl_config.{name}: no such file: {path}")
        if (self.client_cert_path is None) != (self.client_key_path is None):
            raise ConfigurationError("ssl_config: client_cert_path and client_key_path go together")
        if not self.require_ssl and (self.ca_cert_path or self.client_cert_path):
            raise ConfigurationError(
                "ssl_config: certificate paths need require_ssl=True (a verified connection "
                "that may silently fall back to plain text verifies nothing)"
            )


@dataclass(frozen=True, slots=True)
class PostgresOptimization:
    """Performance settings, applied through asyncpg's pool options.

    ``enable_prepared_statements``: keep a per-connection cache of prepared statements
    (asyncpg's ``statement_cache_size``); turn off behind PgBouncer in transaction mode.
    ``statement_cache_size``: how many statements each connection keeps prepared.
    ``connection_pool_size``: when set, overrides ``PostgresConfig.pool_size``.
    ``enable_query_optimization``: switch off PostgreSQL's JIT for these short queries (it only
    costs time on them) and skip asyncpg's per-release session reset, a round trip per call
    that authmw does not need because it never changes session state on pooled connections.
    ``batch_size``: most rows one clean-up ``DELETE`` removes (bulk iteration takes its batch
    size per call).
    """

    enable_prepared_statements: bool = True
    connection_pool_size: int | None = None
    statement_cache_size: int = 100
    enable_query_optimization: bool = True
    batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.connection_pool_size is not None and self.connection_pool_size < 1:
            raise ConfigurationError("optimization.connection_pool_size: must be at least 1")
        if self.statement_cache_size < 0:
            raise ConfigurationError("optimization.statement_cache_size: must be >= 0")
        if self.batch_size < 1:
            raise ConfigurationError("optimization.batch_size: must be at least 1")


# URL query options that configure authmw rather than the connection. They are removed before
# the URL reaches asyncpg, which would otherwise send unknown options as server settings.
_URL_OPTIONS = {
    "pool_size": int,
    "min_pool_size": int,
    "timeout": float,
    "table_prefix": str,
    "migration_mode": str,
    "enable_audit_log": bool,
    "cleanup_interval": float,
    "default_ttl": float,
    "max_audit_events": int,
    "max_waiting": int,
}


#: The names of authmw's own URL query options.
URL_OPTION_NAMES = frozenset(_URL_OPTIONS)

# The query options asyncpg reads from a DSN itself; any other name it sends to the server.
_DRIVER_OPTIONS = (
    "host",
    "port",
    "dbname",
    "database",
    "user",
    "password",
    "passfile",
    "service",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslnegotiation",
    "sslcrl",
    "sslpassword",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "target_session_attrs",
    "krbsrvname",
    "gsslib",
)


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"URL option {name}: expected true or false, got {value!r}")


def split_url_options(url: str) -> tuple[str, dict[str, Any]]:
    """Separate authmw's options from a ``postgresql://`` URL: (driver URL, options).

    Raises ``ConfigurationError`` for a URL that cannot be parsed (e.g. an unclosed ``[``).
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # urllib's own error would reach users as an unexpected one
        raise ConfigurationError(f"malformed storage URL {redact_url(url)}: {exc}") from None
    kept: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = _URL_OPTIONS.get(key)
        if kind is None:
            if key not in _DRIVER_OPTIONS and difflib.get_close_matches(
                key, [*_URL_OPTIONS, *_DRIVER_OPTIONS], n=1, cutoff=0.8
            ):
                # A misspelled option (table_prefx): asyncpg would send it to the server as
                # a setting, which refuses it at every attempt to connect.
                raise unknown_option(
                    "postgresql",
                    key,
                    _URL_OPTIONS,
                    _DRIVER_OPTIONS,
                    "or a libpq connection option (sslmode, ...); other names are sent to "
                    "the server as settings (application_name, ...)",
                )
            kept.append((key, value))
            continue
        try:
            if kind is bool:
                options[key] = _parse_bool(key, value)
            elif kind is int:
                options[key] = int(value)
            elif kind is float:
                options[key] = float(value)
            else:
                options[key] = value
        except ValueError:
            raise ConfigurationError(
                f"URL option {key}: not a valid {kind.__name__}: {value!r}"
            ) from None
    if "migration_mode" in options:
        try:
            options["migration_mode"] = PostgresMigrationMode(options["migration_mode"].lower())
        except ValueError:
            modes = ", ".join(m.value for m in PostgresMigrationMode)
            raise ConfigurationError(
                f"URL option migration_mode: one of {modes}, got {options['migration_mode']!r}"
            ) from None
    driver_url = urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(kept), parts.fragment)
    )
    return driver_url, options


@dataclass(frozen=True, slots=True, repr=False)
class PostgresConfig:
    """Settings for :class:`~authmw.storage.postgres.PostgresStorage`.

    ``url`` (required): ``postgresql://user:password@host:port/dbname``; libpq options such as
    ``sslmode`` pass through to asyncpg, and the field names below may also be given as query
    options (``?pool_size=20&table_prefix=app_``). ``pool_size`` (10): most connections held;
    ``min_pool_size`` (1): connections opened at start. ``timeout`` (5 s): the longest one
    storage call may take in all (the wait for a free pooled connection, a new connection and
    the query); it is on every request's path. Migrations, backups and restores run on
    connections of their own whose statements may take at least 5 minutes.
    ``max_waiting`` (None: 1,000 x the pool size): how many calls may wait for a free pooled
    connection; more fail at once with ``StorageUnavailable``.
    ``table_prefix`` (``auth_``): prefix of every table and index name. ``sslmode`` (or the
    URL's ``?sslmode=``): libpq's mode, one of :data:`SSL_MODES`; when neither says, it is
    ``verify-full`` for an ``ssl_config`` with a CA, ``require`` for one without or for
    ``enable_ssl=True`` (an alias of ``sslmode="require"``), else ``disable``: off means plain
    text, never the driver's silent ``prefer``. Contradictions (``enable_ssl=True`` or
    ``ssl_config(require_ssl=True)`` with a mode that allows plain text) are refused.
    ``migration_mode`` (auto): see
    :class:`PostgresMigrationMode`. ``enable_audit_log`` (True): when False, appended audit
    events are dropped and queries return nothing. ``cleanup_interval`` (5 minutes): period of
    the background removal of expired rows. ``default_ttl`` (1 hour): expiry of key-value
    entries stored without one. ``max_audit_events`` (None: unbounded): when set, clean-up
    trims the audit log to that many newest events. The password never appears in ``repr``.

    Raises ``ConfigurationError`` for any invalid value.
    """

    url: str
    pool_size: int = 10
    min_pool_size: int = 1
    timeout: Duration = timedelta(seconds=5)
    table_prefix: str = "auth_"
    enable_ssl: bool = False
    ssl_config: PostgresSSLConfig | None = None
    migration_mode: PostgresMigrationMode = PostgresMigrationMode.AUTO
    enable_audit_log: bool = True
    cleanup_interval: Duration = timedelta(minutes=5)
    default_ttl: Duration = timedelta(hours=1)
    max_audit_events: int | None = None
    max_waiting: int | None = None
    optimization: PostgresOptimization = field(default_factory=PostgresOptimization)
    application_name: str = "authmw"
    sslmode: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or "://" not in self.url:
            raise ConfigurationError("url: expected postgresql://user:password@host/dbname")
        backend_for(self.url, "postgres")  # the scheme table of storage._urls decides
        parse_url(self.url, 5432)  # the one URL check: hosts and ports, named when bad
        try:
            _, options = split_url_options(self.url)
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(f"url: cannot parse {redact_url(self.url)!r}") from exc
        if options:
            # Silently ignoring ?pool_size=... would be worse than refusing it.
            raise ConfigurationError(
                f"url: options {sorted(options)} are read by PostgresConfig.from_url() or "
                "PostgresStorage(url); pass them as fields here"
            )
        if not isinstance(self.table_prefix, str) or not _PREFIX_RE.fullmatch(self.table_prefix):
            raise ConfigurationError(
                f"table_prefix: {self.table_prefix!r} is not allowed; use 1-32 characters of "
                "lower-case letters, digits and underscores, not starting with a digit"
            )
        if self.pool_size < 1:
            raise ConfigurationError("pool_size: must be at least 1")
        if not 0 <= self.min_pool_size <= self.effective_pool_size:
            raise ConfigurationError("min_pool_size: must be between 0 and pool_size")
        if not isinstance(self.migration_mode, PostgresMigrationMode):
            raise ConfigurationError(f"migration_mode: not a mode: {self.migration_mode!r}")
        if self.max_audit_events is not None and self.max_audit_events < 1:
            raise ConfigurationError("max_audit_events: must be at least 1 (or None)")
        if self.max_waiting is not None and self.max_waiting < 0:
            raise ConfigurationError("max_waiting: must be at least 0 (or None)")
        seconds(self.timeout, "timeout")
        seconds(self.cleanup_interval, "cleanup_interval")
        seconds(self.default_ttl, "default_ttl")
        _ = self.ssl_mode  # refuses unknown and contradictory TLS settings now

    def __repr__(self) -> str:
        return (
            f"PostgresConfig(url={redact_url(self.url)!r}, pool_size={self.effective_pool_size}, "
            f"table_prefix={self.table_prefix!r}, sslmode={self.ssl_mode!r}, "
            f"migration_mode={self.migration_mode.value!r})"
        )

    @classmethod
    def from_url(cls, url: str) -> PostgresConfig:
        """A config from a URL whose query may carry the options named above."""
        if not isinstance(url, str) or "://" not in url:
            raise ConfigurationError("url: expected postgresql://user:password@host/dbname")
        driver_url, options = split_url_options(url)
        return cls(url=driver_url, **options)

    # -- builder methods, as in the guide ----------------------------------------------------

    def with_url(self, url: str) -> PostgresConfig:
        """A copy with another URL."""
        return replace(self, url=url)

    def with_pool_size(self, pool_size: int) -> PostgresConfig:
        """A copy with another maximum pool size."""
        return replace(self, pool_size=pool_size)

    def with_timeout(self, timeout: Duration) -> PostgresConfig:
        """A copy with another query/connect/acquire timeout."""
        return replace(self, timeout=timeout)

    def with_table_prefix(self, table_prefix: str) -> PostgresConfig:
        """A copy with another table prefix (validated)."""
        return replace(self, table_prefix=table_prefix)

    def with_enable_ssl(self, enable_ssl: bool) -> PostgresConfig:
        """A copy with TLS switched on (``sslmode`` ``require``) or off (``disable``)."""
        return replace(self, enable_ssl=enable_ssl)

    def with_sslmode(self, sslmode: str) -> PostgresConfig:
        """A copy with another libpq ``sslmode`` (one of :data:`SSL_MODES`)."""
        return replace(self, sslmode=sslmode)

    def with_ssl_config(self, ssl_config: PostgresSSLConfig) -> PostgresConfig:
        """A copy with these TLS settings."""
        return replace(self, ssl_config=ssl_config)

    def with_migration_mode(self, mode: PostgresMigrationMode) -> PostgresConfig:
        """A copy with another migration mode."""
        return replace(self, migration_mode=mode)

    def with_enable_audit_log(self, enable: bool) -> PostgresConfig:
        """A copy with the audit log switched on or off."""
        return replace(self, enable_audit_log=enable)

    def with_cleanup_interval(self, interval: Duration) -> PostgresConfig:
        """A copy with another clean-up period."""
        return replace(self, cleanup_interval=interval)

    def with_optimization(self, optimization: PostgresOptimization) -> PostgresConfig:
        """A copy with these performance settings."""
        return replace(self, optimization=optimization)

    # -- derived values ----------------------------------------------------------------------

    @property
    def effective_pool_size(self) -> int:
        """The pool's maximum size: ``optimization.connection_pool_size`` or ``pool_size``."""
        return self.optimization.connection_pool_size or self.pool_size

    @property
    def ssl_mode(self) -> str:
        """The effective libpq ``sslmode`` (see the class docstring for how it is chosen).

        Raises ``ConfigurationError`` for an unknown mode, a URL and a field that disagree, or
        a mode weaker than ``enable_ssl`` / ``ssl_config`` ask for."""
        url_modes = {v for k, v in parse_qsl(urlsplit(self.url).query) if k == "sslmode"}
        for mode in (self.sslmode, *url_modes):
            if mode is not None and mode not in SSL_MODES:
                # A word is shown; anything else may be a mangled URL carrying a secret.
                shown = repr(mode) if re.fullmatch(r"[A-Za-z_-]{1,20}", mode) else "another value"
                raise ConfigurationError(f"sslmode: one of {', '.join(SSL_MODES)}, got {shown}")
        given = url_modes | ({self.sslmode} if self.sslmode is not None else set())
        if len(given) > 1:
            raise ConfigurationError(f"sslmode: the URL and the config disagree ({sorted(given)})")
        cfg = self.ssl_config
        if not given:
            if cfg is not None and not cfg.require_ssl:
                return "prefer"
            if cfg is not None:
                return "verify-full" if cfg.ca_cert_path else "require"
            return "require" if self.enable_ssl else "disable"
        mode = given.pop()
        if self.enable_ssl and mode not in _ENCRYPTED:
            raise ConfigurationError(
                f"enable_ssl=True asks for TLS but sslmode={mode} allows plain"
            )
        if cfg is not None and cfg.require_ssl != (mode in _ENCRYPTED):
            raise ConfigurationError(
                f"ssl_config(require_ssl={cfg.require_ssl}) contradicts sslmode={mode}"
            )
        if cfg is not None and mode.startswith("verify") and cfg.ca_cert_path is None:
            raise ConfigurationError(
                f"sslmode={mode} with ssl_config needs ssl_config.ca_cert_path (or, without "
                "ssl_config, sslrootcert in the URL)"
            )
        return mode

    @property
    def waiting_bound(self) -> int:
        """How many calls may wait for a free pooled connection: ``max_waiting``, or
        :data:`~authmw.storage.base.WAITERS_PER_CONNECTION` x the pool size when unset."""
        if self.max_waiting is None:
            return WAITERS_PER_CONNECTION * self.effective_pool_size
        return self.max_waiting

    @property
    def ssl_enabled(self) -> bool:
        """True unless the effective ``sslmode`` is ``disable`` (``allow``/``prefer`` may still
        end up in plain text; ``require`` and the verify modes never do)."""
        return self.ssl_mode != "disable"

    @property
    def target(self) -> str:
        """``host:port/dbname`` for messages (never the user or password)."""
        parts = urlsplit(self.url)
        hosts = parts.netloc.rsplit("@", 1)[-1] or "localhost"
        return f"{hosts}{parts.path or '/'}"

    @property
    def driver_url(self) -> str:
        """The URL handed to asyncpg: authmw's own query options removed."""
        return split_url_options(self.url)[0]

    def ssl_argument(self) -> ssl.SSLContext | str | bool:
        """asyncpg's ``ssl`` argument, always explicit: ``False`` for ``disable`` (asyncpg's
        own default, ``prefer``, would negotiate TLS), the mode name when asyncpg builds the
        context itself (from the URL's ``sslrootcert``/``sslcert``/``sslkey``), or a context
        made from ``ssl_config``'s files."""
        mode = self.ssl_mode
        cfg = self.ssl_config
        if mode == "disable":
            return False
        if cfg is None or mode not in _ENCRYPTED:
            return mode
        if cfg.ca_cert_path is None:
            # Encrypted but unauthenticated, as libpq's sslmode=require.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=cfg.ca_cert_path)
            # With a CA, libpq's require checks the chain as verify-ca does; only verify-full
            # checks the host name.
            context.check_hostname = mode == "verify-full"
        if cfg.client_cert_path is not None:
            context.load_cert_chain(cfg.client_cert_path, cfg.client_key_path)
        return context

    def pool_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.create_pool`` (without ``reset``)."""
        opt = self.optimization
        timeout = seconds(self.timeout, "timeout")
        settings = {"application_name": self.application_name}
        if opt.enable_query_optimization:
            settings["jit"] = "off"
        return {
            "dsn": self.driver_url,
            "min_size": self.min_pool_size,
            "max_size": self.effective_pool_size,
            "timeout": timeout,
            "command_timeout": timeout,
            "statement_cache_size": opt.statement_cache_size
            if opt.enable_prepared_statements
            else 0,
            "ssl": self.ssl_argument(),
            "server_settings": settings,
        }
