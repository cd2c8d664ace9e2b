"""RedisConfig and URLs: defaults, validation, every URL form, and no password ever shown."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from authmw.errors import ConfigurationError, StorageUnavailable
from authmw.storage import storage_from_url
from authmw.storage.redis import RedisConfig, RedisFailoverConfig, RedisStorage
from tests.backends.redis import RedisServer, free_port, purge

SECRET = "s3cr3t-Pa55word"


def test_defaults_follow_the_guide() -> None:
    """The defaults are the guide's: localhost, 10 connections, 5 s, auth:, 1 hour."""
    config = RedisConfig()
    assert config.url == "redis://localhost:6379"
    assert (config.pool_size, config.timeout, config.key_prefix) == (10, 5.0, "auth:")
    assert config.default_ttl == timedelta(hours=1)
    assert (config.cluster_mode, config.failover, config.retry_attempts) == (False, None, 3)
    assert RedisStorage().name == "redis" and RedisStorage().mode == "standalone"


def test_builder_methods_return_changed_copies() -> None:
    """The guide's with_* builders return a new config with one setting changed."""
    base = RedisConfig()
    config = (
        base.with_url("redis://h:1")
        .with_pool_size(3)
        .with_timeout(timedelta(seconds=2))
        .with_key_prefix("x:")
        .with_default_ttl(60)
        .with_retry_attempts(5)
        .with_retry_delay(0.5)
    )
    assert (config.url, config.pool_size, config.timeout, config.key_prefix) == (
        "redis://h:1",
        3,
        timedelta(seconds=2),
        "x:",
    )
    assert (config.default_ttl, config.retry_attempts, config.retry_delay) == (60, 5, 0.5)
    assert base == RedisConfig()
    clustered = base.with_cluster_urls(["redis://a:7000", "redis://b:7001"])
    assert clustered.is_cluster and clustered.cluster_urls == ("redis://a:7000", "redis://b:7001")
    assert not clustered.with_cluster_mode(False).cluster_mode
    failover = RedisFailoverConfig("mymaster", ["s1:26379"])
    assert base.with_failover(failover).failover is failover
    assert isinstance(RedisStorage.with_config(config), RedisStorage)


@pytest.mark.parametrize(
    "settings",
    [
        {"pool_size": 0},
        {"timeout": -1},
        {"timeout": "5"},
        {"default_ttl": 0},
        {"retry_attempts": -1},
        {"retry_delay": -0.1},
        {"wait_replicas": -1},
        {"max_audit_events": 0},
        {"key_prefix": ""},
        {"url": "http://localhost"},
        {"url": "localhost:6379"},
        {"cluster_mode": True, "key_prefix": "{auth}:"},
        {"cluster_mode": True, "wait_replicas": 1},
        {"cluster_mode": True, "failover": RedisFailoverConfig("m", ["s:1"])},
    ],
)
def test_bad_settings_raise_configuration_error(settings: dict[str, object]) -> None:
    """Each bad setting is refused at construction with ConfigurationError (a ValueError)."""
    with pytest.raises(ConfigurationError):
        RedisConfig(**settings)  # type: ignore[arg-type]


def test_failover_config_needs_master_and_sentinels() -> None:
    """A failover config without a master name or sentinels is refused."""
    with pytest.raises(ConfigurationError):
        RedisFailoverConfig("", ["s:26379"])
    with pytest.raises(ConfigurationError):
        RedisFailoverConfig("mymaster", [])


def test_from_url_reads_authmw_options_and_keeps_the_rest() -> None:
    """Query options become settings; unknown ones stay in the URL for redis-py."""
    config = RedisConfig.from_url(
        "rediss://bob:pw@cache:6380/2?key_prefix=app:&pool_size=4&timeout=2.5"
        "&default_ttl=30&retry_attempts=7&retry_delay=0.2&wait_replicas=1&wait_timeout=0.5"
        "&max_audit_events=50&ssl_cert_reqs=none"
    )
    assert config.url == "rediss://bob:pw@cache:6380/2?ssl_cert_reqs=none"
    assert (config.key_prefix, config.pool_size, config.timeout, config.default_ttl) == (
        "app:",
        4,
        2.5,
        30.0,
    )
    assert (config.retry_attempts, config.retry_delay, config.wait_replicas) == (7, 0.2, 1)
    assert (config.wait_timeout, config.max_audit_events) == (0.5, 50)
    with pytest.raises(ConfigurationError):
        RedisConfig.from_url("redis://h/0?pool_size=many")


def test_sentinel_url() -> None:
    """redis+sentinel://[auth@]s1,s2/master/db describes a failover setup."""
    storage = storage_from_url(
        f"redis+sentinel://:{SECRET}@s1:26379,s2/mymaster/3?sentinel_password={SECRET}"
    )
    assert isinstance(storage, RedisStorage) and storage.mode == "sentinel"
    failover = storage.config.failover
    assert failover is not None and failover.master_name == "mymaster"
    assert failover.sentinels == ("s1:26379", "s2:26379")
    assert failover.sentinel_password == SECRET
    with pytest.raises(ConfigurationError):
        RedisConfig.from_url("redis+sentinel://s1:26379")
    direct = RedisConfig(url="redis+sentinel://s1,s2:26380/other")
    assert direct.failover is not None and direct.failover.master_name == "other"
    assert direct.failover.sentinels == ("s1:26379", "s2:26380")


def test_cluster_url() -> None:
    """redis+cluster://n1,n2 turns cluster mode on with those seed nodes."""
    storage = storage_from_url(f"redis+cluster://:{SECRET}@n1:7000,n2:7001?key_prefix=c:")
    assert isinstance(storage, RedisStorage) and storage.mode == "cluster"
    assert storage.config.key_prefix == "c:"


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "rediss://localhost:6380/1",
        "unix:///tmp/redis.sock?db=2",
    ],
)
def test_storage_from_url_single_server(url: str) -> None:
    """storage_from_url builds a standalone RedisStorage for redis://, rediss://, unix://."""
    storage = storage_from_url(url) if not url.startswith("unix") else RedisStorage(url)
    assert isinstance(storage, RedisStorage) and storage.mode == "standalone"


def test_password_never_in_repr() -> None:
    """No repr of a config, failover config or storage shows a password."""
    failover = RedisFailoverConfig(
        "mymaster", [f"redis://:{SECRET}@s1:26379"], sentinel_password=SECRET
    )
    configs = [
        RedisConfig(url=f"redis://user:{SECRET}@h:6379/0"),
        RedisConfig.from_url(f"redis://h:6379/0?password={SECRET}"),
        RedisConfig(url=f"redis://user:{SECRET}@h/0", failover=failover),
        RedisConfig(cluster_mode=True, cluster_urls=[f"redis://:{SECRET}@n1:7000"]),
    ]
    for config in configs:
        for text in (repr(config), str(config), repr(RedisStorage(config)), repr(config.failover)):
            assert SECRET not in text
            assert SECRET.replace("-", "%2D") not in text
    assert "user:***@h" in repr(configs[0])


# One secret per position, each distinct, so a leak says which position leaked.
POSITIONS = {
    "userinfo": "Pw-userinfo-1",
    "password": "Pw-query-2",
    "sentinel_password": "Pw-sentinel-3",
    "ssl_password": "Pw-sslkey-4",
    "sslpassword": "Pw-sslpassword-5",
    "cluster": "Pw-cluster-6",
    "cluster_query": "Pw-cluster-query-7",
    "sentinel_url": "Pw-sentinel-url-8",
    "failover_setting": "Pw-failover-9",
    "schemeless_sentinel": "Pw-bare-sentinel-10",
}


def _leaks(text: str) -> list[str]:
    """The positions whose secret appears in ``text`` (raw or percent-encoded)."""
    return [
        name
        for name, secret in POSITIONS.items()
        if secret in text or secret.replace("-", "%2D") in text
    ]


def _every_position_configs(*, all_options: bool = True) -> list[RedisConfig]:
    """Configs with a secret in every position (``all_options=False``: only the query options
    redis-py accepts on every kind of connection, so that connecting gets as far as the host)."""
    p = POSITIONS
    plain = query = f"password={p['password']}&key_prefix=leak:"
    if all_options:
        query += f"&ssl_password={p['ssl_password']}&sslpassword={p['sslpassword']}"
    failover = RedisFailoverConfig(
        "mymaster",
        [
            f"redis://:{p['sentinel_url']}@127.0.0.1:1",
            f"user:{p['schemeless_sentinel']}@127.0.0.1:2",
        ],
        sentinel_password=p["failover_setting"],
    )
    return [
        # from_url refuses options redis-py would refuse on redis:// (ssl_*, sslpassword).
        RedisConfig.from_url(f"redis://user:{p['userinfo']}@127.0.0.1:1/0?{plain}"),
        RedisConfig.from_url(
            f"rediss://:{p['userinfo']}@127.0.0.1:1/0?{plain}&ssl_password={p['ssl_password']}"
        ),
        RedisConfig.from_url(
            f"redis+sentinel://:{p['userinfo']}@127.0.0.1:1,127.0.0.1:2/m/0"
            f"?sentinel_password={p['sentinel_password']}&{query}"
        ),
        RedisConfig.from_url(f"redis+cluster://:{p['userinfo']}@127.0.0.1:1?{query}"),
        RedisConfig(url=f"redis://:{p['userinfo']}@127.0.0.1:1/0?{query}", failover=failover),
        RedisConfig(
            url=f"redis://127.0.0.1:1/0?{query}",
            cluster_mode=True,
            cluster_urls=[
                f"redis://:{p['cluster']}@127.0.0.1:1",
                f"redis://127.0.0.1:2?password={p['cluster_query']}",
            ],
        ),
    ]


def test_no_secret_in_any_repr_whatever_its_position() -> None:
    """Passwords in user info, password=, sentinel_password=, ssl_password=, sslpassword=,
    cluster URLs, sentinel URLs and the failover setting: no repr or str shows any of them."""
    for config in _every_position_configs():
        storage = RedisStorage(config)
        for text in (
            repr(config),
            str(config),
            repr(storage),
            str(storage),
            repr(config.failover),
            str(config.failover),
        ):
            assert not _leaks(text), (_leaks(text), text)


async def test_no_secret_in_connection_errors_whatever_its_position(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Connecting to a wrong host with secrets in every position: the errors, their causes and
    the retry log lines show none of them."""
    caplog.set_level(logging.DEBUG, logger="authmw")
    for config in _every_position_configs(all_options=False):
        storage = RedisStorage(
            config.with_timeout(0.5).with_retry_attempts(1).with_retry_delay(0.01)
        )
        with pytest.raises((StorageUnavailable, ConfigurationError)) as at_open:
            await storage.open()
        with pytest.raises((StorageUnavailable, ConfigurationError)) as at_read:
            await storage.get_token("x")
        await storage.close()
        for error in (at_open.value, at_read.value):
            for text in (str(error), repr(error), str(error.__cause__), repr(error.__cause__)):
                assert not _leaks(text), (_leaks(text), text)
    assert caplog.records, "retries are logged"
    assert not _leaks(caplog.text), _leaks(caplog.text)


def test_no_secret_in_configuration_errors() -> None:
    """A refused scheme, option or URL never echoes the password beside it."""
    secret = POSITIONS["userinfo"]
    with pytest.raises(ConfigurationError) as scheme:
        RedisConfig(url=f"http://:{secret}@h?password={secret}")
    with pytest.raises(ConfigurationError) as option:
        RedisConfig.from_url(f"redis://:{secret}@h/0?pool_size={secret}")
    with pytest.raises(ConfigurationError) as port:
        RedisConfig.from_url(f"redis://:{secret}@h:port/0")
    for info in (scheme, option, port):
        assert not _leaks(str(info.value)), str(info.value)


# -- real servers: credentials, database numbers, TLS -----------------------------------------


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    """A throwaway server with a default password and an ACL user ``alice``."""
    server = RedisServer([f"requirepass {SECRET}", "databases 4"], password=SECRET)
    try:
        server.start()
        with server.client() as admin:
            admin.execute_command(
                "ACL", "SETUSER", "alice", "on", f">{SECRET}", "~*", "&*", "+@all"
            )
        yield server
    finally:
        server.destroy()


async def test_username_password_and_database(acl_server: RedisServer) -> None:
    """A URL with user, password and database number reaches that database."""
    storage = RedisStorage(f"redis://alice:{SECRET}@127.0.0.1:{acl_server.port}/3?key_prefix=acl:")
    await storage.open()
    try:
        await storage.kv_set("where", b"db3", ttl=60)
        with acl_server.client() as admin:
            admin.select(3)
            assert admin.get("acl:kv:{where}") == b"db3"
    finally:
        await purge(storage)
        await storage.close()


@pytest.mark.parametrize(
    "url, expected",
    [
        ("redis://alice:wrong-password@127.0.0.1:{port}/0", "refused the credentials"),
        ("redis://127.0.0.1:{port}/0", "requires a password"),
        (f"redis://:{SECRET}@127.0.0.1:{{port}}/9", "database number does not exist"),
    ],
)
async def test_bad_credentials_or_database_fail_clearly_at_open(
    acl_server: RedisServer,
    url: str,
    expected: str,
) -> None:
    """Wrong password, missing password or unknown database: ConfigurationError at open()."""
    storage = RedisStorage(url.format(port=acl_server.port))
    with pytest.raises(ConfigurationError) as info:
        await storage.open()
    await storage.close()
    assert expected in str(info.value)
    assert "wrong-password" not in str(info.value) and SECRET not in str(info.value)


async def test_password_never_in_errors_or_logs(
    acl_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Errors and retry log lines of a storage with a password never contain it."""
    caplog.set_level(logging.DEBUG, logger="authmw")
    storage = RedisStorage(
        RedisConfig(url=f"redis://:{SECRET}@127.0.0.1:1/0", retry_attempts=2, retry_delay=0.01)
    )
    with pytest.raises(StorageUnavailable) as info:
        await storage.get_token("x")
    await storage.close()
    assert caplog.records, "retries are logged"
    for text in (str(info.value), repr(info.value), str(info.value.__cause__), caplog.text):
        assert SECRET not in text


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    """A throwaway server speaking only TLS, with a CA and a certificate for 127.0.0.1."""
    certs = tmp_path_factory.mktemp("tls")
    ca_key, ca_crt = certs / "ca.key", certs / "ca.crt"
    key, csr, crt, ext = certs / "s.key", certs / "s.csr", certs / "s.crt", certs / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for argv in (
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca_crt,
            "-days",
            "2",
            "-subj",
            "/CN=authmw-test-ca",
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_crt,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            crt,
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True, timeout=60)
    server = RedisServer(
        [
            f"tls-cert-file {crt}",
            f"tls-key-file {key}",
            f"tls-ca-cert-file {ca_crt}",
            "tls-auth-clients no",
        ]
    )
    # The plain port answers the readiness check; the storage is given only the TLS port.
    server.conf.append(f"tls-port {free_port()}")
    try:
        server.start()
        yield server, ca_crt
    finally:
        server.destroy()


async def test_rediss_url_uses_tls(tls_server: tuple[RedisServer, Path]) -> None:
    """rediss:// with the test CA verifies the certificate and works end to end."""
    server, ca = tls_server
    tls_port = int(next(c for c in server.conf if c.startswith("tls-port")).split()[1])
    storage = RedisStorage(
        f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}&key_prefix=tls-test:"
    )
    await storage.open()
    try:
        await storage.kv_set("over-tls", b"yes", ttl=60)
        assert await storage.kv_get("over-tls") == b"yes"
    finally:
        await purge(storage)
        await storage.close()
    plain = RedisStorage(
        RedisConfig(url=f"redis://127.0.0.1:{tls_port}/0", timeout=1, retry_attempts=0)
    )
    with pytest.raises(StorageUnavailable):
        await plain.open()
    await plain.close()


@pytest.mark.parametrize(
    ("url", "named", "suggested"),
    [
        ("redis://127.0.0.1:6379/0?key_prefx=app:", "key_prefx", "key_prefix"),
        ("redis://127.0.0.1:6379/0?pool_sise=3", "pool_sise", "pool_size"),
        ("redis://127.0.0.1:6379/0?clint_name=x", "clint_name", "client_name"),
        ("unix:///tmp/redis.sock?tiemout=2", "tiemout", "timeout"),
    ],
)
def test_misspelled_url_option_is_a_configuration_error(
    url: str, named: str, suggested: str
) -> None:
    """A misspelled query option names itself, the closest valid one and the valid list, at
    build time (it used to reach redis-py as a TypeError on every command)."""
    with pytest.raises(ConfigurationError) as info:
        storage_from_url(url)
    message = str(info.value)
    assert repr(named) in message
    assert f"did you mean {suggested!r}" in message
    assert "key_prefix" in message  # the valid options are listed


def test_tls_option_on_plain_url_is_a_configuration_error() -> None:
    """redis-py's TLS options need rediss://; on redis:// they were a TypeError per command."""
    with pytest.raises(ConfigurationError, match="rediss://"):
        storage_from_url("redis://127.0.0.1:6379/0?ssl_cert_reqs=none")
    assert RedisConfig.from_url("redis://h:6379/0?client_name=a&health_check_interval=3")
