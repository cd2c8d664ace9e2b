"""PostgreSQL over TLS, against a throwaway server with certificates made by the test."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from authmw.errors import ConfigurationError
from authmw.storage.postgres import PostgresConfig, PostgresSSLConfig, PostgresStorage
from authmw.storage.postgres._backup import _libpq_env
from authmw.storage.postgres._driver import connect_once
from tests.backends.postgres import PgCluster, fresh_prefix
from tests.support.factories import make_token


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl CLI is needed to make test certificates"
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(cwd: Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-subj",
        f"/CN=authmw test {name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=cwd,
    )


def _make_leaf(cwd: Path, name: str, cn: str, ca: str, extensions: str) -> None:
    _openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={cn}",
        cwd=cwd,
    )
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        cwd=cwd,
    )
    (cwd / f"{name}.key").chmod(0o600)  # libpq (pg_dump) refuses readable client keys


@dataclass
class TLSServer:
    """The SSL-only cluster and the certificate files of one test module."""

    cluster: PgCluster
    certs: Path

    def path(self, name: str) -> str:
        return str(self.certs / name)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    """A PostgreSQL that accepts only TLS (trust for most users, ``cert`` auth for certuser),
    except plain text for plainuser, so a test can see which one a connection got."""
    certs = tmp_path_factory.mktemp("certs")
    _make_ca(certs, "ca")
    _make_ca(certs, "wrong-ca")
    _make_leaf(
        certs,
        "server",
        "127.0.0.1",
        "ca",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n",
    )
    _make_leaf(
        certs,
        "client",
        "certuser",
        "ca",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    cluster = PgCluster(
        hba=[
            "hostssl all certuser 127.0.0.1/32 cert",
            "hostssl all all 127.0.0.1/32 trust",
            "hostnossl all plainuser 127.0.0.1/32 trust",
            "hostnossl all all 127.0.0.1/32 reject",
        ],
        conf=[
            "ssl = on",
            "ssl_cert_file = 'server.crt'",
            "ssl_key_file = 'server.key'",
            "ssl_ca_file = 'ca.crt'",
        ],
        files={
            "server.crt": (certs / "server.crt").read_bytes(),
            "server.key": (certs / "server.key").read_bytes(),
            "ca.crt": (certs / "ca.crt").read_bytes(),
        },
    )
    try:
        cluster.init().start()
        cluster.psql(
            "CREATE ROLE certuser LOGIN; GRANT CREATE ON SCHEMA public TO certuser; "
            "CREATE ROLE plainuser LOGIN; GRANT CREATE ON SCHEMA public TO plainuser"
        )
        yield TLSServer(cluster, certs)
    finally:
        cluster.destroy()


async def _ssl_in_use(storage: PostgresStorage) -> tuple[bool, str]:
    async with storage.pool.acquire() as con:
        row = await con.fetchrow(
            "SELECT ssl, current_user AS who FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        return row["ssl"], row["who"]


async def test_require_ssl_with_ca_connects(tls_server: TLSServer) -> None:
    """require_ssl with the right CA verifies the server and serves requests over TLS."""
    storage = PostgresStorage.with_config(
        PostgresConfig(
            url=tls_server.cluster.url(),
            table_prefix=fresh_prefix(),
            timeout=10,
            ssl_config=PostgresSSLConfig(require_ssl=True, ca_cert_path=tls_server.path("ca.crt")),
        )
    )
    await storage.open()
    try:
        assert await _ssl_in_use(storage) == (True, "postgres")
        token = make_token()
        await storage.store_token(token)
        assert await storage.get_token(token.token_id) == token
    finally:
        await storage.close()


async def test_wrong_ca_is_refused_clearly(tls_server: TLSServer) -> None:
    """A CA that did not sign the server certificate fails open() with a TLS trust error."""
    storage = PostgresStorage.with_config(
        PostgresConfig(
            url=tls_server.cluster.url(),
            table_prefix=fresh_prefix(),
            timeout=10,
            ssl_config=PostgresSSLConfig(ca_cert_path=tls_server.path("wrong-ca.crt")),
        )
    )
    with pytest.raises(ConfigurationError, match="certificate is not trusted") as info:
        await storage.open()
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert storage.pool is None


async def test_plain_connection_is_rejected_by_ssl_only_server(tls_server: TLSServer) -> None:
    """Without TLS (sslmode=disable) this server's pg_hba refuses: a ConfigurationError."""
    storage = PostgresStorage(tls_server.cluster.url() + "?sslmode=disable&timeout=10")
    with pytest.raises(ConfigurationError, match="refused this user or host"):
        await storage.open()


async def test_enable_ssl_without_ca_encrypts(tls_server: TLSServer) -> None:
    """enable_ssl=True alone gives an encrypted (unverified) connection."""
    storage = PostgresStorage.with_config(
        PostgresConfig(
            url=tls_server.cluster.url(), table_prefix=fresh_prefix(), timeout=10, enable_ssl=True
        )
    )
    await storage.open()
    try:
        assert (await _ssl_in_use(storage))[0] is True
    finally:
        await storage.close()


async def test_client_certificate_authenticates(tls_server: TLSServer, tmp_path: Path) -> None:
    """cert authentication: the client certificate logs in as certuser; none is refused."""
    url = tls_server.cluster.url(user="certuser")
    with_cert = PostgresConfig(
        url=url,
        table_prefix=fresh_prefix(),
        timeout=10,
        ssl_config=PostgresSSLConfig(
            ca_cert_path=tls_server.path("ca.crt"),
            client_cert_path=tls_server.path("client.crt"),
            client_key_path=tls_server.path("client.key"),
        ),
    )
    storage = PostgresStorage.with_config(with_cert)
    await storage.open()
    try:
        assert await _ssl_in_use(storage) == (True, "certuser")
        await storage.store_token(make_token("certified"))
        # pg_dump gets the same TLS settings through the environment.
        info = await storage.create_backup(tmp_path / "tls.sql", method="pg_dump")
        assert info.method == "pg_dump"
    finally:
        await storage.close()
    without_cert = PostgresStorage.with_config(
        PostgresConfig(
            url=url,
            table_prefix=fresh_prefix(),
            timeout=10,
            ssl_config=PostgresSSLConfig(ca_cert_path=tls_server.path("ca.crt")),
        )
    )
    with pytest.raises(ConfigurationError, match="refused this user or host"):
        await without_cert.open()


async def _ssl_of_one_connection(config: PostgresConfig) -> bool:
    """Whether a connection made with ``config``'s settings is encrypted, as the server sees it."""
    con = await connect_once(config, "test")
    try:
        encrypted: bool = await con.fetchval(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        return encrypted
    finally:
        await con.close()


@pytest.mark.parametrize(
    ("query", "fields", "mode", "encrypted"),
    [
        ("", {}, "disable", False),
        ("", {"enable_ssl": False}, "disable", False),
        ("?sslmode=disable", {}, "disable", False),
        ("", {"sslmode": "disable"}, "disable", False),
        ("?sslmode=allow", {}, "allow", False),
        ("?sslmode=prefer", {}, "prefer", True),
        ("?sslmode=require", {}, "require", True),
        ("", {"sslmode": "require"}, "require", True),
        ("", {"enable_ssl": True}, "require", True),
        ("?sslmode=verify-full&sslrootcert={ca}", {}, "verify-full", True),
        ("", {"sslmode": "verify-ca", "ssl_config": "ca"}, "verify-ca", True),
        ("", {"ssl_config": "ca"}, "verify-full", True),
    ],
)
async def test_sslmode_is_what_the_connection_gets(
    tls_server: TLSServer, query: str, fields: dict[str, object], mode: str, encrypted: bool
) -> None:
    """Off is plain text (not the driver's silent prefer) and each libpq mode does what its
    name says, for the driver and for pg_dump/psql; a server taking both sees the difference."""
    ca = tls_server.path("ca.crt")
    if fields.get("ssl_config") == "ca":
        fields = {**fields, "ssl_config": PostgresSSLConfig(ca_cert_path=ca)}
    url = tls_server.cluster.url(user="plainuser") + query.format(ca=ca)
    config = PostgresConfig(url=url, timeout=10, **fields)  # type: ignore[arg-type]
    assert config.ssl_mode == mode and f"sslmode={mode!r}" in repr(config)
    assert _libpq_env(config)[1]["PGSSLMODE"] == mode
    assert await _ssl_of_one_connection(config) is encrypted


async def test_disabled_and_required_through_the_pool(tls_server: TLSServer) -> None:
    """The storage's pooled connections follow the mode too: plain by default, TLS on require."""
    url = tls_server.cluster.url(user="plainuser")
    for suffix, expected in (("", False), ("?sslmode=require", True)):
        storage = PostgresStorage.with_config(
            PostgresConfig(url=url + suffix, table_prefix=fresh_prefix(), timeout=10)
        )
        await storage.open()
        try:
            assert await _ssl_in_use(storage) == (expected, "plainuser")
        finally:
            await storage.close()


@pytest.mark.parametrize(
    ("query", "fields", "message"),
    [
        ("?sslmode=sometimes", {}, "one of disable"),
        ("", {"sslmode": "on"}, "one of disable"),
        ("?sslmode=require", {"sslmode": "disable"}, "disagree"),
        ("?sslmode=prefer", {"enable_ssl": True}, "allows plain"),
        ("", {"sslmode": "disable", "ssl_config": PostgresSSLConfig()}, "contradicts"),
        ("", {"sslmode": "verify-full", "ssl_config": PostgresSSLConfig()}, "ca_cert_path"),
    ],
)
def test_contradictory_or_unknown_modes_are_refused(
    query: str, fields: dict[str, object], message: str
) -> None:
    """Unknown modes and settings that contradict each other raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match=message):
        PostgresConfig(url="postgresql://u@h/db" + query, **fields)  # type: ignore[arg-type]
