"""The batch capabilities behind migration, on every backend that offers them."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from authmw.models import AuditEvent, utcnow
from authmw.storage import AuthStorage
from authmw.storage.base import BulkImport, BulkLookup, KVEntry
from tests.support.factories import make_session, make_token, make_user


def bulk(storage: AuthStorage) -> tuple[BulkImport, BulkLookup] | None:
    """The storage's batch capabilities, or None for a backend without them."""
    if isinstance(storage, BulkImport) and isinstance(storage, BulkLookup):
        return storage, storage
    return None


async def test_import_is_insert_if_absent(storage: AuthStorage) -> None:
    """Each import writes only records whose keys are free, never changes one, and says so."""
    found = bulk(storage)
    if found is None:  # a wrapper without batch capabilities: migration uses the Protocol
        assert not isinstance(storage, BulkImport) or not isinstance(storage, BulkLookup)
        return
    imp, look = found
    users = [make_user(f"u{i}") for i in range(3)]
    assert await imp.import_users(users[:2]) == [True, True]
    changed = dataclasses.replace(users[0], roles=("other",))
    assert await imp.import_users([changed, users[2]]) == [False, True]
    assert await look.lookup_users(["u0", "nobody", "u2"]) == [users[0], None, users[2]]

    live, gone = make_token("u0"), make_token("u0", ttl=-100, refresh_ttl=-50)
    thief = make_token("u1", refresh_id=live.refresh_id)  # same refresh selector, new id
    assert await imp.import_tokens([live, gone]) == [True, False]
    assert await imp.import_tokens([live, thief]) == [False, False]
    assert await look.lookup_tokens([live.token_id, gone.token_id, thief.token_id]) == [
        live,
        None,
        None,
    ]
    assert await storage.get_token_by_refresh(live.refresh_id or "") == live
    assert [t.token_id for t in await storage.list_user_tokens("u0")] == [live.token_id]

    session = make_session("u0", data={"cart": [1]})
    assert await imp.import_sessions([session]) == [True]
    assert await imp.import_sessions([dataclasses.replace(session, data={})]) == [False]
    assert await look.lookup_sessions([session.session_id]) == [session]
    assert await storage.list_user_sessions("u0") == [session]
    anonymous = make_session(None, data={"cart": [2]})  # a visitor's: moves with user_id None
    assert await imp.import_sessions([anonymous]) == [True]
    assert await look.lookup_sessions([anonymous.session_id]) == [anonymous]
    assert (await storage.get_statistics()).anonymous_sessions == 1

    expires = utcnow() + timedelta(seconds=120)
    entries = [KVEntry("a", b"1", expires), KVEntry("b", b"2", utcnow() - timedelta(1))]
    assert await imp.import_kv(entries) == [True, False]
    assert await imp.import_kv([KVEntry("a", b"changed", expires)]) == [False]
    (held,) = await look.lookup_kv(["a"])
    assert held is not None and held.value == b"1" and held.expires_at is not None
    assert abs((held.expires_at - expires).total_seconds()) < 1
    assert await storage.kv_get("b") is None

    event = AuditEvent("test", True, "u0")
    assert await imp.import_audit([event]) == [True]
    again = await imp.import_audit([event])
    assert again == [not imp.audit_ids_unique]
    if imp.audit_ids_unique:
        assert len(await storage.query_audit(action="test")) == 1
