"""Native backup and restore of the PostgreSQL backend's tables (pg_dump's data format).

A backup is a plain SQL data file in ``pg_dump``'s format: a header of ``-- key: value``
comments saying how and from what it was made, then one ``COPY ... FROM stdin`` block per
table and the audit log's sequence position. It is made by ``pg_dump --data-only`` when that
is installed (and works against the server), otherwise in-process with asyncpg's ``COPY``,
which writes the same format; the header's ``made-with`` line says which. The schema itself is
not in the file: restore first brings the target to the backup's schema version with the
packaged migrations, then loads the rows, all of them or none (one transaction).

Either kind of file restores with ``psql`` or in-process. The in-process path accepts only the
statements such files contain (``SET``, ``set_config('search_path')``, ``setval``) and
``COPY`` into this prefix's tables; ``psql`` runs whatever the file says, so only restore
files you made. Files are written to a temporary name and renamed, so a failed backup never
leaves a half file under the requested name, and are readable by their owner only (they hold
password hashes).
"""

# ruff: noqa: S608 -- SQL is built only from the validated table prefix (an identifier
# regex in PostgresConfig) and fixed names; every value is a bind parameter.

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from ..._time import seconds, utcnow
from ...errors import BackupError, ConfigurationError, StorageUnavailable
from .._urls import parse_url, scrub, secrets_of
from ..base import NativeBackupInfo
from . import _schema as schema
from ._config import PostgresConfig
from ._driver import BACKEND, DRIVER_ERRORS, connect_once, translate
from ._sql import TABLE_SUFFIXES

__all__ = ["create_backup", "read_header", "restore_backup"]

log = logging.getLogger("authmw.storage.postgres")

_MAGIC = "-- authmw-backup: 1"
_HEADER_RE = re.compile(r"-- ([a-z-]+): (.*)")
_IDENT = r'(?:[a-z_][a-z0-9_$]*|"(?:[^"]|"")+")'
_COPY_RE = re.compile(rf"COPY ({_IDENT})\.({_IDENT}) \(((?:{_IDENT})(?:, {_IDENT})*)\) FROM stdin;")
# The only statements a pg_dump --data-only file of our tables holds besides COPY.
_ALLOWED = (
    re.compile(r"SET [a-z_]+ = [A-Za-z0-9_']+;"),
    re.compile(r"SELECT pg_catalog\.set_config\('search_path', '', false\);"),
    re.compile(rf"SELECT pg_catalog\.setval\('{_IDENT}\.{_IDENT}', \d+, (?:true|false)\);"),
)


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def _password(url: str) -> str | None:
    """The password ``url`` carries, in its user info or as ``?password=``."""
    parsed = parse_url(url, 5432)
    if parsed.password:
        return parsed.password
    return next((v for k, v in parsed.query if k.lower() == "password" and v), None)


def _private_file(path: Path) -> IO[bytes]:
    """``path`` created for writing, readable and writable by its owner only.

    The mode is given at creation (whatever the umask adds, it only removes bits), and
    ``O_EXCL`` refuses a file or symlink someone placed under the temporary name first, whose
    own mode or target would otherwise be kept."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


class _LocalFile:
    """The backup's temporary file, created private (:func:`_private_file`).

    A failed local write (a full disk, a quota) is the file's failure, raised as
    ``BackupError`` naming the file: the COPY's own errors are ``OSError`` too, and the two
    must not be told apart by the caller from one ``except``.
    """

    def __init__(self, tmp: Path, target: Path) -> None:
        self._target = target
        self._file = self._guard(_private_file, tmp)

    def _guard(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as exc:
            raise BackupError(
                f"cannot write backup file {self._target}: {exc.strerror or exc}; "
                "nothing was written under that name"
            ) from exc

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        self._guard(self._file.write, data)

    def fileno(self) -> int:
        """The descriptor a tool (pg_dump) writes to directly."""
        return int(self._file.fileno())

    def sync(self) -> None:
        """Flush to the disk: the file is renamed into place only once it is whole there."""
        self._guard(self._file.flush)
        self._guard(os.fsync, self._file.fileno())

    def close(self) -> None:
        """Close the file (errors of a failed write were raised already)."""
        with contextlib.suppress(OSError):
            self._file.close()


def _libpq_env(config: PostgresConfig) -> tuple[str, dict[str, str]]:
    """A connection URL without the password, and an environment carrying it (so no secret
    appears in a process listing) plus the TLS settings, for pg_dump and psql."""
    parts = urlsplit(config.driver_url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{hosts}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"])
    url = urlunsplit(("postgresql", netloc, parts.path, query, ""))
    env = dict(os.environ)
    password = _password(config.url)
    if password:
        env["PGPASSWORD"] = password
    env["PGCONNECT_TIMEOUT"] = str(max(2, int(seconds(config.timeout, "timeout"))))
    env["PGAPPNAME"] = f"{config.application_name}-backup"
    # Always explicit, as for asyncpg: libpq's own default (prefer) would negotiate TLS when
    # the config says off, and an inherited PGSSLMODE must not override the config.
    env["PGSSLMODE"] = config.ssl_mode
    ssl_cfg = config.ssl_config
    if ssl_cfg is not None and ssl_cfg.ca_cert_path:
        env["PGSSLROOTCERT"] = ssl_cfg.ca_cert_path
    if ssl_cfg is not None and ssl_cfg.client_cert_path and ssl_cfg.client_key_path:
        env["PGSSLCERT"] = ssl_cfg.client_cert_path
        env["PGSSLKEY"] = ssl_cfg.client_key_path
    return url, env


async def _run_tool(
    argv: list[str], env: dict[str, str], stdout: IO[bytes] | int, secrets: Sequence[str]
) -> bytes:
    """Run pg_dump/psql; return its stdout when not redirected. Raises StorageUnavailable with
    the tool's (scrubbed) complaint when it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        message = scrub(err.decode(errors="replace").strip(), secrets)
        raise StorageUnavailable(
            BACKEND, Path(argv[0]).name, f"exited with {proc.returncode}: {message[-2000:]}"
        )
    return out or b""


async def _tool_version(tool: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        tool, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return out.decode(errors="replace").strip() or Path(tool).name


async def _qualified_tables(con: Any, prefix: str) -> list[tuple[str, str]]:
    """(schema, table) of every data table of ``prefix``; ConfigurationError if missing."""
    found: list[tuple[str, str]] = []
    for suffix in TABLE_SUFFIXES:
        name = f"{prefix}{suffix}"
        nsp = await con.fetchval(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass($1)",
            name,
        )
        if nsp is None:
            raise ConfigurationError(
                f"nothing to back up: table {name} does not exist (schema not migrated?)"
            )
        found.append((nsp, name))
    return found


def _header(
    method: str,
    tool: str,
    prefix: str,
    version: int,
    tables: list[tuple[str, str]],
    created: datetime,
) -> str:
    names = " ".join(f"{nsp}.{name}" for nsp, name in tables)
    return (
        f"{_MAGIC}\n-- made-with: {method}\n-- tool: {tool}\n-- table-prefix: {prefix}\n"
        f"-- schema-version: {version}\n-- tables: {names}\n"
        f"-- created-at: {created.isoformat()}\n"
        "-- restore: PostgresStorage.restore_backup(path) or the authmw CLI; the schema is\n"
        "-- created by authmw's migrations, this file holds the rows only.\n\n"
    )


async def _write_in_process(
    con: Any, out: _LocalFile, tables: list[tuple[str, str]], audit_table: str
) -> None:
    # One repeatable-read snapshot, so the file is a consistent picture of every table.
    async with con.transaction(isolation="repeatable_read", readonly=True):
        for nsp, name in tables:
            columns = [
                r["attname"]
                for r in await con.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) "
                    "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    f"{nsp}.{name}",
                )
            ]
            cols = ", ".join(columns)
            out.write(f"COPY {nsp}.{name} ({cols}) FROM stdin;\n".encode())

            async def sink(chunk: bytes) -> None:
                out.write(chunk)

            await con.copy_from_table(
                name, schema_name=nsp, columns=columns, output=sink, format="text"
            )
            out.write(b"\\.\n\n")
        seq = await con.fetchval("SELECT pg_get_serial_sequence($1, 'id')", audit_table)
        if seq is not None:
            row = await con.fetchrow(f"SELECT last_value, is_called FROM {seq}")
            called = "true" if row["is_called"] else "false"
            out.write(
                f"SELECT pg_catalog.setval('{seq}', {row['last_value']}, {called});\n".encode()
            )


async def create_backup(
    config: PostgresConfig, path: str | os.PathLike[str], *, method: str = "auto"
) -> NativeBackupInfo:
    """Write every row of the prefix's tables to ``path``.

    ``method``: ``"auto"`` (pg_dump when installed and working, else in-process),
    ``"pg_dump"`` or ``"in-process"``. Raises ``StorageUnavailable`` or
    ``ConfigurationError`` (tables missing, unknown method).
    """
    if method not in ("auto", "pg_dump", "in-process"):
        raise ConfigurationError(f"backup method: auto, pg_dump or in-process, not {method!r}")
    target = Path(path)
    pg_dump = shutil.which("pg_dump")
    if method == "pg_dump" and pg_dump is None:
        raise ConfigurationError("backup method pg_dump: pg_dump is not installed")
    hidden = secrets_of([config.url])
    con = await connect_once(config, "create_backup", bulk=True)
    try:
        tables = await _qualified_tables(con, config.table_prefix)
        version = (await schema.read_state(con, config.table_prefix)).version
        created = utcnow()
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            made_with = ""
            if method in ("auto", "pg_dump") and pg_dump is not None:
                url, env = _libpq_env(config)
                tool = await _tool_version(pg_dump)
                argv = [
                    pg_dump,
                    "--data-only",
                    "--no-owner",
                    "--no-privileges",
                    "--strict-names",
                    "--encoding=UTF8",
                    f"--dbname={url}",
                ]
                argv += [f"--table={_quote(nsp)}.{_quote(name)}" for nsp, name in tables]
                out = _LocalFile(tmp, target)  # local file; pg_dump does the work
                try:
                    out.write(
                        _header(
                            "pg_dump", tool, config.table_prefix, version, tables, created
                        ).encode()
                    )
                    out.sync()
                    await _run_tool(argv, env, out.fileno(), hidden)
                    out.sync()
                    made_with = "pg_dump"
                except StorageUnavailable as exc:
                    _, wrote, why = exc.detail.partition("could not write to output file")
                    if wrote:
                        # pg_dump's words for a failed local write: the file's failure.
                        cause = why.lstrip(": ").splitlines()[0] if why.strip() else "failed"
                        raise BackupError(
                            f"cannot write backup file {target}: {cause}; "
                            "nothing was written under that name"
                        ) from exc
                    if method == "pg_dump":
                        raise
                    log.warning("pg_dump failed (%s); backing up in-process instead", exc)
                    tmp.unlink(missing_ok=True)  # created afresh below
                finally:
                    out.close()
            if not made_with:
                tool = f"asyncpg {asyncpg.__version__} COPY"
                out = _LocalFile(tmp, target)  # local file, written per COPY chunk
                try:
                    out.write(
                        _header(
                            "in-process", tool, config.table_prefix, version, tables, created
                        ).encode()
                    )
                    await _write_in_process(con, out, tables, f"{config.table_prefix}audit_log")
                    out.sync()
                finally:
                    out.close()
                made_with = "in-process"
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
    except DRIVER_ERRORS as exc:
        raise translate(exc, "create_backup", target=config.target, secrets=hidden) from exc
    finally:
        await con.close()
    log.info("postgres backup of %r written to %s with %s", config.table_prefix, target, made_with)
    return NativeBackupInfo(
        target,
        made_with,
        tool,
        config.table_prefix,
        version,
        tuple(f"{nsp}.{name}" for nsp, name in tables),
        created,
    )


def read_header(path: str | os.PathLike[str]) -> NativeBackupInfo:
    """The header of a backup file; ``ConfigurationError`` if it is not an authmw backup."""
    fields: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().rstrip("\n")
        if first != _MAGIC:
            raise ConfigurationError(f"{path}: not an authmw PostgreSQL backup file")
        for line in f:
            match = _HEADER_RE.fullmatch(line.rstrip("\n"))
            if match is None:
                break
            fields[match.group(1)] = match.group(2)
    try:
        return NativeBackupInfo(
            Path(path),
            fields["made-with"],
            fields.get("tool", ""),
            fields["table-prefix"],
            int(fields["schema-version"]),
            tuple(fields["tables"].split()),
            datetime.fromisoformat(fields["created-at"]),
        )
    except (KeyError, ValueError) as exc:
        raise ConfigurationError(f"{path}: damaged authmw backup header ({exc})") from None


async def _load_in_process(con: Any, path: Path, allowed_tables: set[str]) -> None:
    """Run a backup file's statements and COPY blocks on ``con`` (inside its transaction)."""
    with open(path, "rb") as f:  # noqa: ASYNC230 (local file, read a line at a time)
        lines: Iterator[bytes] = iter(f)
        pending = ""
        for raw in lines:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not pending and (not line or line.startswith("--")):
                continue
            if not pending and line.startswith(("\\restrict ", "\\unrestrict ")):
                continue  # pg_dump's psql-only guard lines
            copy = _COPY_RE.fullmatch(line) if not pending else None
            if copy is not None:
                nsp, table = _unquote(copy.group(1)), _unquote(copy.group(2))
                if table not in allowed_tables:
                    raise ConfigurationError(f"{path}: COPY into unexpected table {table!r}")
                columns = [_unquote(c) for c in copy.group(3).split(", ")]
                state = {"ended": False}
                await con.copy_to_table(
                    table,
                    schema_name=nsp,
                    columns=columns,
                    source=_copy_rows(lines, state),
                    format="text",
                )
                if not state["ended"]:
                    raise ConfigurationError(f"{path}: file ends inside the data of {table}")
                continue
            pending = f"{pending} {line}".strip()
            if not pending.endswith(";"):
                continue
            statement, pending = pending, ""
            if not any(rule.fullmatch(statement) for rule in _ALLOWED):
                raise ConfigurationError(
                    f"{path}: statement not allowed in a backup: {statement[:120]!r}"
                )
            if statement.startswith("SET client_encoding"):
                if "UTF8" not in statement:
                    raise ConfigurationError(f"{path}: only UTF8 backups can be restored")
                continue  # asyncpg always talks UTF8
            await con.execute(statement)
        if pending:
            raise ConfigurationError(f"{path}: unterminated statement at end of file")


async def _copy_rows(lines: Iterator[bytes], state: dict[str, bool]) -> AsyncIterator[bytes]:
    """The data lines of one COPY block, in chunks, up to its ``\\.`` terminator."""
    chunk: list[bytes] = []
    size = 0
    for raw in lines:
        if raw.rstrip(b"\r\n") == b"\\.":
            state["ended"] = True
            break
        chunk.append(raw)
        size += len(raw)
        if size >= 1 << 16:
            yield b"".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)


async def restore_backup(
    config: PostgresConfig,
    path: str | os.PathLike[str],
    *,
    method: str = "auto",
    replace: bool = False,
) -> NativeBackupInfo:
    """Rebuild the prefix's tables from a backup file made by :func:`create_backup`.

    The target database gets the schema up to the backup's version (migrations), then every
    row of the file in one transaction. The tables must be empty unless ``replace`` is True,
    in which case their rows are removed in that same transaction. ``method``: ``"auto"``
    (psql when installed, else in-process), ``"psql"`` or ``"in-process"``.
    Raises ``ConfigurationError`` (not a backup, other prefix, tables not empty) or
    ``StorageUnavailable``.
    """
    if method not in ("auto", "psql", "in-process"):
        raise ConfigurationError(f"restore method: auto, psql or in-process, not {method!r}")
    source = Path(path)
    info = read_header(source)
    prefix = config.table_prefix
    if info.table_prefix != prefix:
        raise ConfigurationError(
            f"{source}: the backup is of table prefix {info.table_prefix!r}, this storage "
            f"uses {prefix!r}"
        )
    psql = shutil.which("psql")
    if method == "psql" and psql is None:
        raise ConfigurationError("restore method psql: psql is not installed")
    use_psql = method == "psql" or (method == "auto" and psql is not None)
    hidden = secrets_of([config.url])
    con = await connect_once(config, "restore_backup", bulk=True)
    try:
        await schema.migrate(con, prefix, target=info.schema_version)
        tables = await _qualified_tables(con, prefix)
        names = ", ".join(f"{_quote(nsp)}.{name}" for nsp, name in tables)
        if not replace:
            for nsp, name in tables:
                if await con.fetchval(f"SELECT EXISTS (SELECT 1 FROM {_quote(nsp)}.{name})"):
                    raise ConfigurationError(
                        f"restore target is not empty: {name} has rows "
                        "(restore into an empty database, or pass replace=True)"
                    )
        if use_psql and psql is not None:
            url, env = _libpq_env(config)
            argv = [
                psql,
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                f"--dbname={url}",
            ]
            if replace:
                argv += ["-c", f"TRUNCATE {names}"]
            argv += ["-f", str(source)]
            try:
                await _run_tool(argv, env, asyncio.subprocess.DEVNULL, hidden)
            except StorageUnavailable as exc:
                if method == "psql":
                    raise
                # psql ran in one transaction, so nothing of it stayed: load in-process.
                log.warning("psql restore failed (%s); restoring in-process instead", exc)
                use_psql = False
        if not use_psql:
            async with con.transaction():
                if replace:
                    await con.execute(f"TRUNCATE {names}")
                await _load_in_process(con, source, {name for _, name in tables})
    except DRIVER_ERRORS as exc:
        raise translate(exc, "restore_backup", target=config.target, secrets=hidden) from exc
    finally:
        await con.close()
    log.info(
        "postgres restore of %r from %s (%s file) done with %s",
        prefix,
        source,
        info.method,
        "psql" if use_psql else "in-process",
    )
    return info
