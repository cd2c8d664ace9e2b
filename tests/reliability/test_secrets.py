"""Secrets at rest and in logs: after a full flow (sign-up, failed and good logins, bearer
tokens and a refresh, a cookie session with data, logout, backups), no raw password, token,
session id, CSRF token or signed cookie appears in any Redis key or value of the test's prefix,
any row of the test database, any backup file, any log line at DEBUG, or any repr."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from authmw import AuthFramework
from authmw.middleware._cookies import SessionCookieCodec
from authmw.storage import AuthStorage
from authmw.storage.migration import write_backup
from authmw.storage.postgres import PostgresConfig, PostgresStorage
from authmw.storage.redis import RedisStorage
from tests.support.reliability import make_config, starlette_app

PASSWORD = "s3cret-Password-of-the-victim"
WRONG = "wrong-Password-guessed-by-mallory"


async def flow(auth: AuthFramework, backup: Path) -> tuple[list[str], list[Any]]:
    """Run the whole flow; return every raw secret it handled, and objects to repr."""
    secrets = [PASSWORD, WRONG]
    objects: list[Any] = [auth, auth.config, auth.storage]
    await auth.register_user("victim", PASSWORD, roles=["admin"])
    first = await auth.authenticate("victim", PASSWORD)
    second = await auth.refresh(first.refresh_token)
    objects += [first, second]
    for token in (first, second):
        for raw in (token.access_token, token.refresh_token):
            secrets += [raw, raw.split(".")[2]]  # the whole token and its secret verifier
    app = starlette_app(auth)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        bad = await http.post("/login", json={"user": "victim", "password": WRONG})
        assert bad.status_code == 401
        good = await http.post("/login", json={"user": "victim", "password": PASSWORD})
        assert good.status_code == 200
        cookie, csrf = good.cookies["authmw_session"], good.cookies["authmw_csrf"]
        cart = await http.post("/cart", headers={"x-csrf-token": csrf}, json={"item": "book"})
        assert cart.status_code == 200
        who = await http.get("/whoami", headers={"authorization": f"Bearer {second.access_token}"})
        assert who.json()["user"] == "victim"
        codec = SessionCookieCodec(auth.config.signing_keys, auth.config.cookie, "authmw_csrf")
        session_id = codec.unsign(cookie)[0]
        objects += [codec, await auth.get_session(session_id)]
        secrets += [cookie, csrf, session_id, session_id.split(".")[2]]
        await write_backup(auth.storage, backup)
        assert (await http.post("/logout", headers={"x-csrf-token": csrf})).status_code == 200
    secrets.append(str(auth.config.secret_key))
    return secrets, objects


def assert_absent(secrets: list[str], text: str, where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a raw secret ({secret[:6]}...) is in {where}"


async def test_no_secret_in_redis(
    redis_storage: RedisStorage, redis_url: str, tmp_path: Path
) -> None:
    """Every Redis key and value of the test's prefix, and the portable backup, hold no secret."""
    auth = AuthFramework(redis_storage, make_config())
    secrets, _ = await flow(auth, tmp_path / "backup.jsonl")
    dump = []
    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(match=redis_storage.config.key_prefix + "*", count=1000):
            kind = client.type(key).decode()
            value: Any = {
                "string": lambda: client.get(key),
                "hash": lambda: client.hgetall(key),
                "set": lambda: client.smembers(key),
                "zset": lambda: client.zrange(key, 0, -1, withscores=True),
                "list": lambda: client.lrange(key, 0, -1),
                "stream": lambda: client.xrange(key),
            }.get(kind, lambda: None)()
            dump.append(f"{key!r} {value!r}")
    assert len(dump) > 3
    text = "\n".join(dump)
    assert_absent(secrets, text, "Redis")
    assert_absent(secrets, (tmp_path / "backup.jsonl").read_text(), "the portable backup")


async def test_no_secret_in_postgres(postgres_storage: PostgresStorage, tmp_path: Path) -> None:
    """Every row of the test's tables, the portable and the native backup hold no secret."""
    auth = AuthFramework(postgres_storage, make_config())
    secrets, _ = await flow(auth, tmp_path / "backup.jsonl")
    native = tmp_path / "native.sql"
    await postgres_storage.create_backup(native)
    prefix = postgres_storage.config.table_prefix
    dump = []
    async with postgres_storage.pool.acquire() as con:
        tables = await con.fetch(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE $1",
            prefix.replace("_", r"\_") + "%",
        )
        for row in tables:
            rows = await con.fetch(f'SELECT * FROM "{row["tablename"]}"')
            dump += [repr(dict(r)) for r in rows]
    assert len(dump) > 3
    assert_absent(secrets, "\n".join(dump), "PostgreSQL")
    assert_absent(secrets, (tmp_path / "backup.jsonl").read_text(), "the portable backup")
    assert_absent(secrets, native.read_text(errors="replace"), "the native backup")


async def test_postgres_native_backup_private(
    postgres_storage: PostgresStorage, tmp_path: Path
) -> None:
    """The native backup (argon2 hashes, token digests) is readable by its owner only."""
    old = os.umask(0o022)
    try:
        await postgres_storage.create_backup(tmp_path / "native.sql")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "native.sql").stat().st_mode) == 0o600


async def test_no_secret_in_logs_or_reprs(
    storage: AuthStorage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """All log output of the flow at DEBUG, and the repr of every object it made, hold no
    secret (on every backend)."""
    auth = AuthFramework(storage, make_config())
    with caplog.at_level(logging.DEBUG):
        secrets, objects = await flow(auth, tmp_path / "backup.jsonl")
    assert_absent(secrets, caplog.text, "the logs")
    assert_absent(secrets, "\n".join(repr(o) for o in objects), "a repr")


def test_postgres_config_repr_hides_sslpassword() -> None:
    """A client-key passphrase in a PostgreSQL URL is redacted in the config's repr."""
    config = PostgresConfig.from_url("postgresql://u:pw@h/app?sslpassword=KEYPASS")
    assert "KEYPASS" not in repr(config) and "pw@" not in repr(config)
