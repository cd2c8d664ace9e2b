"""StorageMigration: copy every record from one backend to another, safely and more than once.

::

    migration = StorageMigration(source, target, MigrationOptions(verify_data=True))
    report = await migration.migrate_all()        # users, tokens, sessions, kv, audit
    print(report.summary())

Rules
-----
* **Insert-if-absent.** A record the target does not hold is copied as it is: token and
  session digests move unchanged, so every issued token and session id keeps working (with the
  same ``secret_key``), and no secret is needed or exposed. A record the target already holds
  and that is equal is counted ``already_present`` and not rewritten; one that differs is
  counted ``mismatched`` and left alone unless ``overwrite=True``.
* **Idempotent and resumable.** Running twice copies nothing the second time; a run stopped
  half-way (a crash, Ctrl-C, an exception from the progress callback) is finished by running it
  again.
* **Expiry.** Sources never hand out expired records; a record that expires while it is being
  moved is counted ``skipped_expired`` and not written. Tokens and sessions carry their expiry
  in the record itself. With ``preserve_ttl`` (the default) key-value entries keep their
  remaining lifetime; without it they get the target's ``default_ttl``.
* **Batched.** Reads use the source's bulk iterators; writes and read-backs use the target's
  batch capabilities (:mod:`authmw.storage.base`) when it has them, one Protocol call per
  record otherwise.
* The storages are opened if needed and never closed here: the caller owns them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from ..._time import now_ts
from ...errors import ConfigurationError
from ..base import AuthStorage, BulkImport, KVEntry
from ._kinds import Kind, MigrationSource, kinds
from ._report import KindReport, MigrationProgress, MigrationReport

__all__ = [
    "KindReport",
    "MigrationOptions",
    "MigrationProgress",
    "MigrationReport",
    "MigrationSource",
    "StorageMigration",
]

T = TypeVar("T")

ProgressCallback = Callable[[MigrationProgress], "Awaitable[None] | None"]


@dataclass(frozen=True, slots=True)
class MigrationOptions:
    """How :class:`StorageMigration` runs.

    ``batch_size`` (1000): records per read and write round. ``verify_data`` (False): read
    every copied record back from the target and compare it with the source's.
    ``preserve_ttl`` (True): key-value entries keep their remaining lifetime (else they get the
    target's default TTL). ``dry_run`` (False): classify every record, write nothing.
    ``overwrite`` (False): replace target records that differ from the source's (audit events
    are never replaced). ``progress``: called (sync or async) after every batch with a
    :class:`MigrationProgress`; an exception from it stops the migration. ``kv_ttl_tolerance``
    (1 s): key-value expiries closer than this count as equal.
    """

    batch_size: int = 1000
    verify_data: bool = False
    preserve_ttl: bool = True
    dry_run: bool = False
    overwrite: bool = False
    progress: ProgressCallback | None = field(default=None, repr=False, compare=False)
    kv_ttl_tolerance: float = 1.0

    def __post_init__(self) -> None:
        if (
            not isinstance(self.batch_size, int)
            or isinstance(self.batch_size, bool)
            or self.batch_size < 1
        ):
            raise ConfigurationError(
                f"batch_size: expected an integer >= 1, got {self.batch_size!r}"
            )
        if self.kv_ttl_tolerance < 0:
            raise ConfigurationError("kv_ttl_tolerance: must not be negative")


async def _ahead(source: AsyncIterator[list[T]]) -> AsyncIterator[list[T]]:
    """Yield the source's batches while already fetching the next one (reads overlap writes)."""
    pending: asyncio.Future[list[T] | None] = asyncio.ensure_future(anext(source, None))
    try:
        while True:
            batch = await pending
            if batch is None:
                return
            pending = asyncio.ensure_future(anext(source, None))
            yield batch
    finally:
        if not pending.done():
            pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # failing already
            await pending
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


class StorageMigration:
    """Moves records from ``source`` (any storage, or a backup file) to ``target``.

    Each ``migrate_*`` method returns a :class:`KindReport`; :meth:`migrate_all` a
    :class:`MigrationReport`. They raise ``StorageUnavailable`` when either side fails (rerun
    to resume), ``ConfigurationError`` when source and target are the same object, and
    whatever the progress callback raises.
    """

    def __init__(
        self, source: MigrationSource, target: AuthStorage, options: MigrationOptions | None = None
    ) -> None:
        if source is target:
            raise ConfigurationError("migration: source and target are the same storage")
        self.source = source
        self.target = target
        self.options = options or MigrationOptions()
        self._kinds = kinds()
        self._stats: Any = None  # the source's statistics while migrate_all runs

    def __repr__(self) -> str:
        return (
            f"StorageMigration(source={self.source.name!r}, target={self.target.name!r}, "
            f"options={self.options!r})"
        )

    # -- the guide's builder style ---------------------------------------------------------

    def _with(self, **changes: Any) -> StorageMigration:
        return StorageMigration(self.source, self.target, replace(self.options, **changes))

    def with_batch_size(self, batch_size: int) -> StorageMigration:
        """A copy with another batch size."""
        return self._with(batch_size=batch_size)

    def with_verify_data(self, verify: bool = True) -> StorageMigration:
        """A copy that reads back every copied record (or not)."""
        return self._with(verify_data=verify)

    def with_preserve_ttl(self, preserve: bool = True) -> StorageMigration:
        """A copy that keeps key-value lifetimes (or resets them to the target's default)."""
        return self._with(preserve_ttl=preserve)

    def with_dry_run(self, dry_run: bool = True) -> StorageMigration:
        """A copy that writes nothing."""
        return self._with(dry_run=dry_run)

    def with_progress(self, progress: ProgressCallback | None) -> StorageMigration:
        """A copy that reports each batch to ``progress``."""
        return self._with(progress=progress)

    # -- public operations -----------------------------------------------------------------

    async def migrate_all(self) -> MigrationReport:
        """Users, tokens, sessions, key-value entries, then the audit log."""
        start = time.perf_counter()
        report = MigrationReport(
            source=self.source.name, target=self.target.name, dry_run=self.options.dry_run
        )
        try:
            if self.options.progress is not None:
                # Counting can mean a scan of the whole source: once for every kind.
                await self.source.open()
                self._stats = await self._statistics()
            for name in self._kinds:
                report.kinds[name] = await self._run(self._kinds[name])
        finally:
            self._stats = None
        report.duration = time.perf_counter() - start
        return report

    async def migrate_users(self) -> KindReport:
        """Every user (password hashes move as they are)."""
        return await self._run(self._kinds["users"])

    async def migrate_tokens(self) -> KindReport:
        """Every live token record with its refresh and user indexes."""
        return await self._run(self._kinds["tokens"])

    async def migrate_sessions(self) -> KindReport:
        """Every live session."""
        return await self._run(self._kinds["sessions"])

    async def migrate_kv_data(self) -> KindReport:
        """Every live key-value entry (counters, lockouts, application data)."""
        return await self._run(self._kinds["kv"])

    async def migrate_audit_log(self) -> KindReport:
        """Every audit event, oldest first (events already in the target, by id, are kept)."""
        return await self._run(self._kinds["audit"])

    # -- the loop ----------------------------------------------------------------------------

    async def _statistics(self) -> Any:
        get = getattr(self.source, "get_statistics", None)
        return None if get is None else await get()

    async def _total(self, kind: Kind) -> int | None:
        stats = self._stats if self._stats is not None else await self._statistics()
        value = getattr(stats, kind.stat, None)
        return value if isinstance(value, int) else None

    def _same(self, kind: Kind, a: Any, b: Any) -> bool:
        if isinstance(a, KVEntry):
            if a.value != b.value:
                return False
            if not self.options.preserve_ttl or a.expires_at is None or b.expires_at is None:
                return True
            gap: float = abs(a.expires_at.timestamp() - b.expires_at.timestamp())
            return gap <= self.options.kv_ttl_tolerance
        return bool(a == b)

    async def _run(self, kind: Kind) -> KindReport:
        opts = self.options
        start = time.perf_counter()
        report = KindReport(kind.name, dry_run=opts.dry_run)
        await self.source.open()
        await self.target.open()
        total = await self._total(kind) if opts.progress is not None else None
        # A log without an id index is deduplicated here: the target's events, read once.
        known: dict[str, Any] | None = None
        if kind.name == "audit" and not (
            isinstance(self.target, BulkImport) and self.target.audit_ids_unique
        ):
            known = {
                e.event_id: e
                async for page in self.target.iter_audit(opts.batch_size)
                for e in page
            }
        written: dict[str, Any] = {}
        batches = 0
        async for batch in _ahead(kind.iterate(self.source, opts.batch_size)):
            if known is None:
                await self._batch(kind, batch, report)
            else:
                await self._log_batch(kind, batch, report, known, written)
            batches += 1
            report.duration = time.perf_counter() - start
            if opts.progress is not None:
                result = opts.progress(
                    MigrationProgress(kind.name, report.read, total, batches, report)
                )
                if inspect.isawaitable(result):
                    await result
        if written and opts.verify_data:
            await self._verify_log(kind, report, written)
        report.duration = time.perf_counter() - start
        return report

    def _live(self, kind: Kind, batch: list[Any], report: KindReport) -> list[Any]:
        now = now_ts()
        report.read += len(batch)
        live = []
        for record in batch:
            expires = kind.expires(record)
            if expires is not None and expires <= now:
                report.skipped_expired += 1
            else:
                live.append(record)
        return live

    async def _batch(self, kind: Kind, batch: list[Any], report: KindReport) -> None:
        opts, target = self.options, self.target
        live = self._live(kind, batch, report)
        if not live:
            return
        copied: list[Any] = []
        if opts.dry_run:
            refused = live
        else:
            inserted = await kind.import_batch(target, live, not opts.preserve_ttl)
            copied = [r for r, ok in zip(live, inserted, strict=True) if ok]
            refused = [r for r, ok in zip(live, inserted, strict=True) if not ok]
            report.copied += len(copied)
        existing = (
            await kind.lookup_batch(target, [kind.key(r) for r in refused]) if refused else []
        )
        replaced = []
        for record, held in zip(refused, existing, strict=True):
            expires = kind.expires(record)
            if held is None and opts.dry_run:
                report.copied += 1  # would be copied
            elif held is None and expires is not None and expires <= now_ts():
                report.skipped_expired += 1  # expired while in flight
            elif held is not None and self._same(kind, record, held):
                report.already_present += 1
            else:
                # Held and different, or refused over a secondary key (a refresh id in use).
                report.conflict(kind.key(record))
                if (
                    opts.overwrite
                    and held is not None
                    and not opts.dry_run
                    and kind.name != "audit"
                ):
                    await kind.overwrite(target, record, not opts.preserve_ttl)
                    report.overwritten += 1
                    replaced.append(record)
        if opts.verify_data and not opts.dry_run:
            await self._verify(kind, [*copied, *replaced], report)

    async def _verify(self, kind: Kind, records: list[Any], report: KindReport) -> None:
        if not records:
            return
        held = await kind.lookup_batch(self.target, [kind.key(r) for r in records])
        now = now_ts()
        for record, copy in zip(records, held, strict=True):
            expires = kind.expires(record)
            if copy is None and expires is not None and expires <= now:
                continue  # expired since it was written: nothing left to compare
            if copy is not None and self._same(kind, record, copy):
                report.verified += 1
            else:
                report.verify_fail(kind.key(record))

    async def _log_batch(
        self,
        kind: Kind,
        batch: list[Any],
        report: KindReport,
        known: dict[str, Any],
        written: dict[str, Any],
    ) -> None:
        live = self._live(kind, batch, report)
        fresh = []
        for event in live:
            held = known.get(event.event_id)
            if held is None:
                fresh.append(event)
                known[event.event_id] = event  # also drops duplicates within the source
            elif held == event:
                report.already_present += 1
            else:
                report.conflict(event.event_id)
        if fresh and not self.options.dry_run:
            await kind.import_batch(self.target, fresh, False)
            if self.options.verify_data:
                written.update((e.event_id, e) for e in fresh)
        report.copied += len(fresh)

    async def _verify_log(self, kind: Kind, report: KindReport, written: dict[str, Any]) -> None:
        # The log cannot be read by id: read it all once and compare.
        found = {
            e.event_id: e
            async for page in self.target.iter_audit(self.options.batch_size)
            for e in page
        }
        for event_id, event in written.items():
            if found.get(event_id) == event:
                report.verified += 1
            else:
                report.verify_fail(event_id)
