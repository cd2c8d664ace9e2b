"""CachedStorage in one process: settings, hits, expiry, local invalidation, bounds, fast path."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from authmw import AuthFramework
from authmw.errors import ConfigurationError, InvalidToken
from authmw.models import AuthToken, utcnow
from authmw.storage import CacheConfig, CachedStorage, InMemoryStorage, storage_from_url
from authmw.storage.base import MISS, SupportsNowaitReads
from authmw.storage.cached._invalidation import decode, encode
from authmw.tokens import ACCESS, TokenCodec
from tests.support.cache_helpers import cache_of, framework
from tests.support.factories import RemoteLikeMemory, make_session, make_token, make_user

CACHED_BACKENDS = ["cached_memory_storage", "cached_redis_storage", "cached_postgres_storage"]


@pytest.fixture
async def auth() -> AsyncIterator[AuthFramework]:
    """A framework over a cached in-memory storage."""
    framework_ = framework(CachedStorage(InMemoryStorage(), CacheConfig(negative_ttl=0.3)))
    await framework_.open()
    yield framework_
    await framework_.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"max_entries": 0},
        {"batch_size": 0},
        {"ttl": 0},
        {"negative_ttl": -1},
        {"max_stale": "long"},
        {"on_outage": "shrug"},
        {"batch_window": -0.1},
    ],
)
def test_config_rejects_bad_values(settings: dict[str, object]) -> None:
    """CacheConfig refuses non-positive sizes and durations and unknown outage policies."""
    with pytest.raises(ConfigurationError):
        CacheConfig(**settings)  # type: ignore[arg-type]


async def test_storage_from_url_wraps_in_a_cache() -> None:
    """storage_from_url(cache=True | CacheConfig) returns a CachedStorage; other values fail."""
    plain = storage_from_url("memory://")
    assert not isinstance(plain, CachedStorage)
    cached = storage_from_url("memory://", cache=True)
    assert isinstance(cached, CachedStorage) and isinstance(cached.inner, InMemoryStorage)
    tuned = storage_from_url("memory://", cache=CacheConfig(max_entries=5))
    assert isinstance(tuned, CachedStorage) and tuned.config.max_entries == 5
    assert cached.name == "cached-memory"
    with pytest.raises(ConfigurationError):
        storage_from_url("memory://", cache="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        CachedStorage(cached)


async def test_repeated_verify_reads_the_backend_once(auth: AuthFramework) -> None:
    """After the first verify, a token is answered from memory: one backend read in all."""
    await auth.register_user("alice", "password")
    token = (await auth.authenticate("alice", "password")).access_token
    before = cache_of(auth).cache_statistics()  # the login read the user once
    for _ in range(100):
        assert (await auth.verify(token)).user_id == "alice"
    stats = cache_of(auth).cache_statistics()
    assert stats.backend_calls - before.backend_calls == stats.misses - before.misses == 1
    assert stats.hits - before.hits == 99
    extra = (await auth.storage.get_statistics()).extra["cache"]
    assert extra["hits"] == stats.hits and extra["backend_calls"] == stats.backend_calls


@pytest.fixture(params=CACHED_BACKENDS)
def cached_backend(request: pytest.FixtureRequest) -> CachedStorage:
    """Each cached backend of the behaviour suite in turn (opened, empty)."""
    cache: CachedStorage = request.getfixturevalue(request.param)
    return cache


async def test_entries_never_outlive_the_record(cached_backend: CachedStorage) -> None:
    """A cached token or session is not served past its own expiry, however long the ttl."""
    cache = cached_backend
    token = make_token(ttl=0.4, refresh_ttl=None)
    session = make_session(ttl=0.4)
    await cache.store_token(token)
    await cache.store_session(session)
    assert await cache.get_token(token.token_id) == token
    assert await cache.get_session(session.session_id) == session
    assert cache.get_token_nowait(token.token_id) == token
    await asyncio.sleep(max(0.0, token.expires_ts - time.time()) + 0.01)
    assert cache.get_token_nowait(token.token_id) is MISS
    assert cache.get_session_nowait(session.session_id) is MISS
    assert await cache.get_token(token.token_id) is None
    assert await cache.get_session(session.session_id) is None


async def test_junk_tokens_never_reach_storage(auth: AuthFramework) -> None:
    """A flood of junk and forged tokens is refused by the tag check: zero backend calls."""
    forger = TokenCodec([b"some-other-key-0123456789abcdef0123"])
    junk = [secrets.token_urlsafe(40) for _ in range(300)]
    forged = [forger.mint(ACCESS).token for _ in range(300)]
    for token in junk + forged:
        with pytest.raises(InvalidToken):
            await auth.verify(token)
        with pytest.raises(InvalidToken):
            auth.verify_nowait(token)
    stats = cache_of(auth).cache_statistics()
    assert stats.misses == stats.backend_calls == 0


async def test_unknown_tokens_are_read_once_per_negative_ttl(auth: AuthFramework) -> None:
    """Well-formed unknown tokens: one backend read each per negative_ttl, however many tries."""
    unknown = [auth._codec.mint(ACCESS).token for _ in range(40)]
    for _ in range(10):
        for token in unknown:
            with pytest.raises(InvalidToken) as info:
                await auth.verify(token)
            assert info.value.reason == "unknown"
    stats = cache_of(auth).cache_statistics()
    assert stats.batched_keys == 40 and stats.negative_hits == 360
    await asyncio.sleep(0.35)  # negative_ttl passes
    for token in unknown:
        with pytest.raises(InvalidToken):
            await auth.verify(token)
    assert cache_of(auth).cache_statistics().batched_keys == 80


async def test_writes_invalidate_locally_at_once(auth: AuthFramework) -> None:
    """Revoke, refresh, logout, revoke_user, session saves and user changes show at once."""
    cache = cache_of(auth)
    await auth.register_user("bob", "password")
    first = await auth.authenticate("bob", "password")
    await auth.verify(first.access_token)
    await auth.revoke(first.access_token)
    with pytest.raises(InvalidToken, match="revoked"):
        await auth.verify(first.access_token)

    second = await auth.authenticate("bob", "password")
    await auth.verify(second.access_token)
    renewed = await auth.refresh(second.refresh_token)
    with pytest.raises(InvalidToken, match="revoked"):
        await auth.verify(second.access_token)
    await auth.verify(renewed.access_token)

    session_id, record = await auth.create_session("bob", {"cart": []})
    assert (await auth.get_session(session_id)).data == {"cart": []}
    await auth.save_session(record, {"cart": [1]})
    assert (await auth.get_session(session_id)).data == {"cart": [1]}
    assert await auth.destroy_session(session_id)
    with pytest.raises(InvalidToken):
        await auth.get_session(session_id)

    other_session, _ = await auth.create_session("bob")
    await auth.get_session(other_session)
    assert await auth.revoke_user("bob") == 4  # three token records + the live session
    with pytest.raises(InvalidToken):
        await auth.verify(renewed.access_token)
    with pytest.raises(InvalidToken):
        await auth.get_session(other_session)

    user = await cache.get_user("bob")
    assert user is not None and user.is_active
    await cache.update_user(dataclasses.replace(user, is_active=False))
    got = await cache.get_user("bob")
    assert got is not None and not got.is_active
    await cache.delete_user("bob")
    assert await cache.get_user("bob") is None
    await cache.create_user(make_user("bob"))
    assert await cache.get_user("bob") is not None
    assert cache.cache_statistics().invalidations_local >= 10


class GatedStorage(RemoteLikeMemory):
    """The in-memory backend whose token reads wait for a gate: a read held in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.reads = 0

    async def get_token(self, token_id: str) -> AuthToken | None:
        self.reads += 1
        found = await super().get_token(token_id)  # read now, answer when the gate opens
        await self.gate.wait()
        return found

    async def lookup_tokens(self, token_ids: Sequence[str]) -> list[AuthToken | None]:
        self.reads += 1
        found = await super().lookup_tokens(token_ids)
        await self.gate.wait()
        return found


async def test_read_in_flight_during_invalidation_is_not_cached() -> None:
    """A read that started before a key was dropped answers its callers but is not kept;
    a caller arriving after the drop starts a read of its own."""
    inner = GatedStorage()
    cache = CachedStorage(inner)
    await cache.open()
    token = make_token()
    await inner.store_token(token)
    early = asyncio.ensure_future(cache.get_token(token.token_id))
    for _ in range(100):  # the read starts within a loop pass or two
        if inner.reads:
            break
        await asyncio.sleep(0)
    assert inner.reads == 1
    revoked = dataclasses.replace(token, revoked_at=utcnow(), revoke_reason="revoked")
    await cache.update_token(revoked)  # drops the key while the old answer is on its way
    late = asyncio.ensure_future(cache.get_token(token.token_id))
    await asyncio.sleep(0.01)
    inner.gate.set()
    old, new = await early, await late
    assert old == token and not old.is_revoked  # asked before the revocation was known
    assert new is not None and new.is_revoked
    assert inner.reads == 2
    cached = cache.get_token_nowait(token.token_id)
    assert cached is not MISS and cached is not None and cached.is_revoked
    await cache.close()


async def test_a_cancelled_leader_does_not_strand_the_others() -> None:
    """The caller leading a batch is cancelled mid-read: the callers that joined its batch
    still get their records (another read takes over), the leader gets CancelledError."""
    inner = GatedStorage()
    cache = CachedStorage(inner)
    await cache.open()
    first, leader_key, joined = make_token(), make_token(), make_token()
    for token in (first, leader_key, joined):
        await inner.store_token(token)
    alone = asyncio.ensure_future(cache.get_token(first.token_id))  # goes out at once
    await asyncio.sleep(0)
    leader = asyncio.ensure_future(cache.get_token(leader_key.token_id))  # a read is out:
    follower = asyncio.ensure_future(cache.get_token(joined.token_id))  # so these gather
    for _ in range(100):  # until the leader's bulk read is in flight
        if inner.reads == 2:
            break
        await asyncio.sleep(0)
    assert inner.reads == 2
    leader.cancel()
    await asyncio.sleep(0.01)
    inner.gate.set()
    assert await alone == first
    assert await follower == joined
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert cache.cache_statistics().batch_sizes == {1: 2, 2: 1}
    await cache.close()


async def test_lru_is_bounded_and_keeps_recent_entries() -> None:
    """Past max_entries the least recently used entry goes; a recently read one stays."""
    inner = InMemoryStorage()
    cache = CachedStorage(inner, CacheConfig(max_entries=3))
    await cache.open()
    tokens = [make_token() for _ in range(5)]
    for token in tokens:
        await inner.store_token(token)
    for token in tokens[:3]:
        await cache.get_token(token.token_id)
    await cache.get_token(tokens[0].token_id)  # a hit: now the most recently used
    for token in tokens[3:]:
        await cache.get_token(token.token_id)
    stats = cache.cache_statistics()
    assert stats.entries == 3 and stats.evictions == 2
    assert cache.get_token_nowait(tokens[0].token_id) == tokens[0]
    assert cache.get_token_nowait(tokens[1].token_id) is MISS
    await cache.close()


async def test_nowait_paths(auth: AuthFramework) -> None:
    """verify_nowait / get_session_nowait answer cache hits, None on a miss, refuse junk."""
    assert isinstance(auth.storage, SupportsNowaitReads) and auth.can_answer_nowait
    await auth.register_user("carol", "password")
    token = (await auth.authenticate("carol", "password")).access_token
    assert auth.verify_nowait(token) is None  # not read yet
    await auth.verify(token)
    record = auth.verify_nowait(token)
    assert record is not None and record.user_id == "carol"
    session_id, _ = await auth.create_session("carol", {"n": 1})
    assert auth.get_session_nowait(session_id) is None
    await auth.get_session(session_id)
    session = auth.get_session_nowait(session_id)
    assert session is not None and session.data == {"n": 1}
    session.data["n"] = 2  # a copy: the cache keeps its own
    again = auth.get_session_nowait(session_id)
    assert again is not None and again.data == {"n": 1}
    await auth.revoke(token)
    assert auth.verify_nowait(token) is None
    with pytest.raises(InvalidToken):
        auth.verify_nowait("not-a-token")
    remote = framework(RemoteLikeMemory())  # every read needs I/O: the fast path defers
    assert remote.verify_nowait(token) is None


def test_invalidation_messages_split_and_round_trip() -> None:
    """Many keys split into messages of at most 7,000 bytes that decode back to the same keys;
    a key too long for a message becomes "everything"; an unreadable message means the same."""
    keys = [f"t:{secrets.token_urlsafe(16)}" for _ in range(1000)] + ["u:ünï"]
    messages = list(encode("me", keys))
    assert len(messages) > 1 and all(len(m.encode()) <= 7000 for m in messages)
    decoded = [decode(m) for m in messages]
    assert {origin for origin, _ in decoded} == {"me"}
    assert [k for _, ks in decoded for k in ks] == keys
    assert decode(next(iter(encode("me", ["u:" + "x" * 8000]))))[1] == ["*"]
    assert decode("not json") == ("", ["*"])
