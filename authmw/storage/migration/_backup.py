"""The portable backup format: one file that any backend writes and any backend restores.

JSON Lines, UTF-8, one record per line, in the models' own JSON form (``to_dict``)::

    {"format": "authmw-backup", "version": 1, "source": "redis", "created_at": "...", ...}
    {"kind": "user", "record": {...}}            # every user, then
    {"kind": "token", "record": {...}}           # every live token record (digests only), then
    {"kind": "session", "record": {...}}         # every live session, then
    {"kind": "kv", "record": {"key": ..., "value": <base64>, "expires_at": ...}}, then
    {"kind": "audit", "record": {...}}           # every audit event, oldest first
    {"kind": "end", "counts": {...}, "sha256": "<hex of every byte above this line>"}

Expiries are absolute instants, so a record restored after it expired is skipped, and a kv entry
keeps the lifetime it had left. The trailer makes a truncated or edited file detectable: restore
checks the whole file (structure, every record, the counts and the digest) before it writes
anything. The file holds password hashes and token digests (never a raw token or password):
it is created with mode 0600, written under a temporary name, synced and renamed, so a failed
backup never leaves a partial file under the requested name.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ...errors import BackupError
from ...models import AuditEvent, AuthToken, SessionData, StorageStatistics, UserRecord, utcnow
from ..base import AuthStorage, KVEntry

__all__ = ["BackupFile", "BackupSummary", "backup_kind", "write_backup"]

FORMAT = "authmw-backup"
_NATIVE_MAGIC = b"-- authmw-backup: "  # the first line of a PostgreSQL native backup
VERSION = 1
# (line kind, StorageStatistics-style count name, iterator name), in file order.
_SECTIONS = (
    ("user", "users", "iter_users"),
    ("token", "tokens", "iter_tokens"),
    ("session", "sessions", "iter_sessions"),
    ("kv", "kv", "iter_kv"),
    ("audit", "audit", "iter_audit"),
)
_ORDER = {kind: i for i, (kind, _, _) in enumerate(_SECTIONS)}


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What a backup file holds (``counts`` per kind: users, tokens, sessions, kv, audit)."""

    path: Path
    source: str
    created_at: str
    counts: dict[str, int] = field(default_factory=dict)
    size: int = 0


def _kv_to_dict(entry: KVEntry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "value": base64.b64encode(entry.value).decode("ascii"),
        "expires_at": None if entry.expires_at is None else entry.expires_at.isoformat(),
    }


def _kv_from_dict(data: dict[str, Any]) -> KVEntry:
    expires = data.get("expires_at")
    when = None if expires is None else datetime.fromisoformat(expires)
    if when is not None and when.tzinfo is None:
        raise ValueError("kv expires_at: naive datetime")
    return KVEntry(str(data["key"]), base64.b64decode(data["value"], validate=True), when)


# Deeper JSON than this is refused before json.loads sees it. A record nests a few levels
# (session data perhaps a few more); near Python's recursion limit json.loads raises
# RecursionError, and a garbage collection that runs at that depth can make finalizers fail
# and print "Exception ignored ..." on stderr (the long fuzz saw it). 500 keeps far from it.
_MAX_DEPTH = 500
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


def too_deep(line: bytes, limit: int = _MAX_DEPTH) -> bool:
    """Whether the JSON text ``line`` nests arrays and objects deeper than ``limit`` (brackets
    inside strings do not count). Scans only lines holding more than ``limit`` openers."""
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSERS:
            depth -= 1
    return False


_DECODE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "user": UserRecord.from_dict,
    "token": AuthToken.from_dict,
    "session": SessionData.from_dict,
    "kv": _kv_from_dict,
    "audit": AuditEvent.from_dict,
}


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


async def write_backup(
    storage: AuthStorage,
    path: str | os.PathLike[str],
    *,
    batch_size: int = 1000,
    progress: Callable[[str, int], None] | None = None,
) -> BackupSummary:
    """Write every record of ``storage`` to ``path`` (replacing it only once complete).

    ``progress(kind, records_so_far)`` is called after each batch. Raises ``BackupError`` when
    the file cannot be written (no space, no permission), and ``StorageUnavailable`` when the
    storage fails; either way nothing is left under ``path`` or a temporary name.
    """
    from ..._version import __version__

    target = Path(path)
    temp = _temp_path(target)
    digest = hashlib.sha256()
    counts = {name: 0 for _, name, _ in _SECTIONS}
    created = utcnow().isoformat()
    size = 0
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise BackupError(f"cannot create backup file {target}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:

            def put(line: bytes) -> None:
                nonlocal size
                digest.update(line)
                out.write(line)
                size += len(line)

            await storage.open()
            put(
                _line(
                    {
                        "format": FORMAT,
                        "version": VERSION,
                        "source": storage.name,
                        "created_at": created,
                        "authmw": __version__,
                    }
                )
            )
            for kind, name, method in _SECTIONS:
                pages: AsyncIterator[list[Any]] = getattr(storage, method)(batch_size)
                async for page in pages:
                    for record in page:
                        body = _kv_to_dict(record) if kind == "kv" else record.to_dict()
                        put(_line({"kind": kind, "record": body}))
                    counts[name] += len(page)
                    if progress is not None:
                        progress(name, counts[name])
            trailer = _line({"kind": "end", "counts": counts, "sha256": digest.hexdigest()})
            out.write(trailer)
            size += len(trailer)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except OSError as exc:
        _discard(temp)
        raise BackupError(
            f"cannot write backup file {target}: {exc.strerror or exc}; "
            "nothing was written under that name"
        ) from exc
    except BaseException:
        _discard(temp)
        raise
    _sync_dir(target.parent)
    return BackupSummary(target, storage.name, created, counts, size)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _sync_dir(directory: Path) -> None:
    # Make the rename itself durable; some filesystems refuse to open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def backup_kind(path: str | os.PathLike[str]) -> str:
    """``"portable"`` (this module's format) or ``"native"`` (PostgreSQL's, see
    ``authmw.storage.postgres._backup``), from the file's first bytes. Raises ``BackupError``
    when the file cannot be read or is neither."""
    try:
        with open(path, "rb") as f:
            start = f.read(64)
    except OSError as exc:
        raise BackupError(f"cannot read backup file {path}: {exc.strerror}") from exc
    if start.startswith(b'{"format":"' + FORMAT.encode()):
        return "portable"
    if start.startswith(_NATIVE_MAGIC):
        return "native"
    raise BackupError(
        f"backup file {path} is not an authmw backup (neither the portable "
        "format nor a PostgreSQL native backup); nothing was restored"
    )


class BackupFile:
    """A portable backup file as a read-only migration source.

    :meth:`open` checks the whole file first (``BackupError`` naming the problem and the line)
    and remembers where each section lies; the ``iter_*`` methods then read one section.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.summary: BackupSummary | None = None
        self._spans: dict[str, tuple[int, int]] = {}

    @property
    def name(self) -> str:
        """``backup`` (of the source backend, once opened)."""
        return f"backup of {self.summary.source}" if self.summary else "backup"

    async def open(self) -> None:
        """Check the file (once)."""
        if self.summary is None:
            self.summary = await asyncio.to_thread(self._check)

    async def close(self) -> None:
        """Nothing to release."""

    def _fail(self, problem: str) -> BackupError:
        return BackupError(f"backup file {self.path} {problem}; nothing was restored")

    def _check(self) -> BackupSummary:
        try:
            with open(self.path, "rb") as f:
                return self._scan(f)
        except OSError as exc:
            raise BackupError(f"cannot read backup file {self.path}: {exc.strerror}") from exc

    def _scan(self, f: IO[bytes]) -> BackupSummary:
        digest = hashlib.sha256()
        header_line = f.readline()
        try:
            header = None if too_deep(header_line) else json.loads(header_line)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise self._fail("is not an authmw backup (no header line)")
        if header.get("version") != VERSION:
            raise self._fail(
                f"has format version {header.get('version')!r}; this authmw reads version {VERSION}"
            )
        digest.update(header_line)
        counts = {name: 0 for _, name, _ in _SECTIONS}
        names = {kind: name for kind, name, _ in _SECTIONS}
        offset, number, last = len(header_line), 1, -1
        while True:
            line = f.readline()
            number += 1
            if not line:
                raise self._fail(
                    f"is truncated (it ends at line {number - 1} without its end marker)"
                )
            if not line.endswith(b"\n"):
                raise self._fail(f"is truncated (line {number} is incomplete)")
            if too_deep(line):
                raise self._fail(f"is corrupt at line {number} (nested deeper than {_MAX_DEPTH})")
            try:
                entry = json.loads(line)
                kind = entry["kind"]
                if kind == "end":
                    break
                order = _ORDER[kind]
                _DECODE[kind](entry["record"])
            # RecursionError: deeply nested JSON, which a file edited by hand or an attacker
            # may hold even with a recomputed checksum.
            except (ValueError, KeyError, TypeError, RecursionError) as exc:
                raise self._fail(f"is corrupt at line {number} ({type(exc).__name__})") from None
            if order < last:
                raise self._fail(f"is corrupt at line {number} ({kind} record out of order)")
            if order != last:
                self._close_span(last, offset)
                self._spans[kind] = (offset, offset)
                last = order
            digest.update(line)
            counts[names[kind]] += 1
            offset += len(line)
        self._close_span(last, offset)
        if f.read(1):
            raise self._fail(f"is corrupt (data after the end marker on line {number})")
        if entry.get("counts") != counts:
            raise self._fail("is corrupt (its record counts do not match the end marker)")
        if entry.get("sha256") != digest.hexdigest():
            raise self._fail(
                "is corrupt (checksum mismatch: the file was changed after it was written)"
            )
        return BackupSummary(
            self.path,
            str(header.get("source", "?")),
            str(header.get("created_at", "?")),
            counts,
            offset + len(line),
        )

    def _close_span(self, order: int, end: int) -> None:
        if order >= 0:
            kind = _SECTIONS[order][0]
            self._spans[kind] = (self._spans[kind][0], end)

    @staticmethod
    def _read_lines(f: IO[bytes], end: int, count: int) -> list[bytes]:
        lines: list[bytes] = []
        while len(lines) < count and f.tell() < end:
            lines.append(f.readline())
        return lines

    async def _records(self, kind: str, batch_size: int) -> AsyncIterator[list[Any]]:
        await self.open()
        start, end = self._spans.get(kind, (0, 0))
        if start == end:
            return
        decode = _DECODE[kind]
        f = await asyncio.to_thread(self.path.open, "rb")
        try:
            f.seek(start)
            while lines := await asyncio.to_thread(self._read_lines, f, end, batch_size):
                yield [decode(json.loads(line)["record"]) for line in lines]
        finally:
            f.close()

    def iter_users(self, batch_size: int = 1000) -> AsyncIterator[list[UserRecord]]:
        """The file's users."""
        return self._records("user", batch_size)

    def iter_tokens(self, batch_size: int = 1000) -> AsyncIterator[list[AuthToken]]:
        """The file's token records."""
        return self._records("token", batch_size)

    def iter_sessions(self, batch_size: int = 1000) -> AsyncIterator[list[SessionData]]:
        """The file's sessions."""
        return self._records("session", batch_size)

    def iter_kv(self, batch_size: int = 1000) -> AsyncIterator[list[KVEntry]]:
        """The file's key-value entries."""
        return self._records("kv", batch_size)

    def iter_audit(self, batch_size: int = 1000) -> AsyncIterator[list[AuditEvent]]:
        """The file's audit events, oldest first."""
        return self._records("audit", batch_size)

    async def get_statistics(self) -> StorageStatistics:
        """The counts the file's end marker gives (for progress totals)."""
        await self.open()
        counts = self.summary.counts if self.summary else {}
        return StorageStatistics(
            backend=self.name,
            total_users=counts.get("users", 0),
            total_tokens=counts.get("tokens", 0),
            active_sessions=counts.get("sessions", 0),
            kv_entries=counts.get("kv", 0),
            audit_events=counts.get("audit", 0),
        )
