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
    """A PostgreSQL that accepts only TLS: trust for most users, ``cert`` auth for certuser."""
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
        cluster.psql("CREATE ROLE certuser LOGIN; GRANT CREATE ON SCHEMA public TO certuser")
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
