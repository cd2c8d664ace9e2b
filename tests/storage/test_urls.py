"""The one redaction rule of storage URLs: no secret in any config repr, str or redacted URL."""

from __future__ import annotations

import pytest

from authmw.errors import ConfigurationError
from authmw.storage import storage_from_url
from authmw.storage._urls import parse_url, redact_url, scrub, secrets_of
from authmw.storage.postgres import PostgresConfig, PostgresStorage
from authmw.storage.redis import RedisConfig, RedisStorage

KEYPASS = "KEYPASS-Zq9"
USERPASS = "USERPW-Xk4"

# Secret options as people write them: libpq's sslpassword, a query password, other cases and
# percent-encoded names, a value that needs percent-encoding.
POSTGRES_URLS = [
    f"postgresql://u:{USERPASS}@h/app?sslpassword={KEYPASS}",
    f"postgresql://u@h/app?sslmode=require&sslpassword={KEYPASS}&password={USERPASS}",
    f"postgres://u:{USERPASS}@h:5433/app?SSLPASSWORD={KEYPASS}&table_prefix=app_",
    f"postgresql://u@h/app?ssl%70assword={KEYPASS}&passphrase={USERPASS}",
    f"postgresql://u@h/app?sslpassword={KEYPASS}%2B%2F",
]
REDIS_URLS = [
    f"rediss://u:{USERPASS}@h:6379/0?ssl_password={KEYPASS}",
    f"rediss://:{USERPASS}@h:6380/1?password={KEYPASS}",
    f"redis+sentinel://:{USERPASS}@s1:26379,s2:26379/mymaster/0?sentinel_password={KEYPASS}",
]


def _clean(text: str) -> None:
    assert KEYPASS not in text and USERPASS not in text, text


@pytest.mark.parametrize("url", POSTGRES_URLS)
def test_postgres_config_never_shows_a_secret(url: str) -> None:
    """repr/str of PostgresConfig (from_url and built), its storage and the redacted URL hide
    the client-key passphrase and every password."""
    from_url = PostgresConfig.from_url(url)
    built = PostgresConfig(url=from_url.url)
    for text in (
        repr(from_url),
        str(from_url),
        repr(built),
        str(built),
        repr(PostgresStorage(url)),
        redact_url(url),
        from_url.target,
    ):
        _clean(text)
    assert "***" in repr(from_url)


@pytest.mark.parametrize("url", REDIS_URLS)
def test_redis_config_never_shows_a_secret(url: str) -> None:
    """repr/str of RedisConfig (from_url and built), its storage and the redacted URL hide
    every password."""
    from_url = RedisConfig.from_url(url)
    built = RedisConfig(url=url)
    for text in (
        repr(from_url),
        str(from_url),
        repr(built),
        str(built),
        repr(RedisStorage(built)),
        redact_url(url),
    ):
        _clean(text)
    assert "***" in repr(built)


@pytest.mark.parametrize("url", POSTGRES_URLS + REDIS_URLS)
def test_parsed_url_repr_never_shows_a_secret(url: str) -> None:
    """The parsed form's repr follows the same rule (password and secret query values)."""
    _clean(repr(parse_url(url, 5432)))


@pytest.mark.parametrize("url", POSTGRES_URLS + REDIS_URLS)
def test_secrets_are_scrubbed_decoded_and_as_written(url: str) -> None:
    """A message quoting the URL, or its decoded values, loses every secret to ``scrub``."""
    found = secrets_of([url])
    message = f"driver said: could not use {url} (decoded: {parse_url(url, 1).query})"
    _clean(scrub(message, found))


def test_a_bad_sslmode_is_not_echoed_when_it_could_carry_a_secret() -> None:
    """An unknown sslmode is named in the error only when it is a plain word."""
    with pytest.raises(ConfigurationError, match="'sometimes'"):
        PostgresConfig(url="postgresql://u@h/app?sslmode=sometimes")
    with pytest.raises(ConfigurationError) as info:
        PostgresConfig(url=f"postgresql://u@h/app?sslmode=require;sslpassword={KEYPASS}")
    _clean(str(info.value))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("memory://[", "cannot be parsed"),
        ("postgresql://\x00", "control character"),
        ("redis://h/0\n", "control character"),
        ("postgresql://,", "empty host"),
        ("redis+sentinel://a:26379,,b:26379/mymaster", "empty host"),
    ],
)
def test_unusable_urls_are_one_configuration_error(url: str, problem: str) -> None:
    """URLs that urllib, the OS or a driver would fail on deep inside (found by the long
    fuzz) are refused by storage_from_url with a ConfigurationError naming the problem."""
    with pytest.raises(ConfigurationError, match=problem):
        storage_from_url(url)
