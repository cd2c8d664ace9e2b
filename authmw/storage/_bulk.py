"""Optional batch capabilities of a backend, used by migration, backup and restore.

A backend is an :class:`~authmw.storage.base.AuthStorage` first; these Protocols add what makes
moving many records fast. :class:`authmw.storage.migration.StorageMigration` checks for them at
run time (``isinstance(target, BulkImport)``) and falls back to one Protocol call per record
when a backend (a wrapper, a third-party store) lacks them.

Insert-if-absent
----------------
``import_*`` writes each record of the batch only when the backend holds no record under its
key (user id, token id, session id, kv key, audit event id), and never changes an existing
one. It returns one boolean per record, in batch order: True when it was written now. This is
what makes a migration idempotent and safe to rerun: a second run writes nothing, and a record
the target already holds is compared, not overwritten. Records are written as they are (the
token and session digests move unchanged), with their indexes; an already expired record is
not written and reported False.

Audit events have no natural per-event index in every backend: ``audit_ids_unique`` is True
when ``import_audit`` itself refuses an event id it already holds (PostgreSQL); otherwise
``import_audit`` appends every event and the caller deduplicates (the migration reads the
target's event ids first).

``lookup_*`` reads many records by key in as few round trips as the backend allows; one result
per key, in order, None where nothing live is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..models import AuditEvent, AuthToken, SessionData, UserRecord
from .base import KVEntry

__all__ = ["BulkImport", "BulkLookup"]


@runtime_checkable
class BulkImport(Protocol):
    """Batched insert-if-absent writes (see the module docstring)."""

    @property
    def audit_ids_unique(self) -> bool:
        """True when :meth:`import_audit` itself skips event ids the backend already holds."""
        ...

    async def import_users(self, batch: Sequence[UserRecord]) -> list[bool]:
        """Insert the users that do not exist; True for each one written."""
        ...

    async def import_tokens(self, batch: Sequence[AuthToken]) -> list[bool]:
        """Insert the token records (with their refresh and user indexes) that do not exist."""
        ...

    async def import_sessions(self, batch: Sequence[SessionData]) -> list[bool]:
        """Insert the sessions (with their user index) that do not exist."""
        ...

    async def import_kv(self, batch: Sequence[KVEntry], default_ttl: bool = False) -> list[bool]:
        """Insert the key-value entries that do not exist, each expiring at its own
        ``expires_at`` (or after the backend's ``default_ttl`` when ``default_ttl`` is True
        or the entry has no expiry)."""
        ...

    async def import_audit(self, batch: Sequence[AuditEvent]) -> list[bool]:
        """Append the events (skipping known event ids when :attr:`audit_ids_unique`)."""
        ...


@runtime_checkable
class BulkLookup(Protocol):
    """Batched reads by key (one result per key, in order, None for nothing live)."""

    async def lookup_users(self, user_ids: Sequence[str]) -> list[UserRecord | None]:
        """The users with these ids."""
        ...

    async def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        """The live token records with these ids."""
        ...

    async def lookup_sessions(self, session_ids: Sequence[str]) -> list[SessionData | None]:
        """The live sessions with these ids."""
        ...

    async def lookup_kv(self, keys: Sequence[str]) -> list[KVEntry | None]:
        """The live key-value entries with these keys, with their expiry."""
        ...
