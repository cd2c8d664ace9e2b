"""AuthConfig/CookieConfig checks, model JSON round trips, errors and storage_from_url."""

from __future__ import annotations

import dataclasses
import warnings
from datetime import datetime, timedelta

import pytest

import authmw
from authmw import AuthConfig, ConfigurationError, CookieConfig, InMemoryStorage
from authmw.errors import AuthmwError, InvalidToken, StorageUnavailable
from authmw.models import AuditEvent, AuthToken, SessionData, UserRecord
from authmw.storage import InMemoryConfig, storage_from_url
from tests.support.factories import make_session, make_token, make_user


def test_public_names() -> None:
    """authmw.__all__ is sorted and every name in it exists."""
    assert list(authmw.__all__) == sorted(authmw.__all__)
    for name in authmw.__all__:
        assert hasattr(authmw, name), name


def test_missing_secret_generates_one_and_warns() -> None:
    """AuthConfig() without a key generates a random one and warns about restarts."""
    with pytest.warns(UserWarning, match="restart"):
        first = AuthConfig()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = AuthConfig()
    assert first.generated_secret and first.secret_key == second.secret_key
    assert isinstance(first.secret_key, bytes) and len(first.secret_key) == 32
    assert repr(first.secret_key) not in repr(first)


def test_secret_never_in_repr() -> None:
    """The secret key and fallbacks never appear in the config's repr."""
    config = AuthConfig(secret_key="s" * 40, secret_key_fallbacks=["f" * 40])
    assert "s" * 40 not in repr(config) and "f" * 40 not in repr(config)


@pytest.mark.parametrize(
    "settings",
    [
        {"secret_key": "short"},
        {"secret_key": "k" * 40, "secret_key_fallbacks": "k" * 40},
        {"secret_key": "k" * 40, "secret_key_fallbacks": ["tiny"]},
        {"secret_key": "k" * 40, "access_token_ttl": 0},
        {"secret_key": "k" * 40, "access_token_ttl": -5},
        {"secret_key": "k" * 40, "refresh_token_ttl": "soon"},
        {"secret_key": "k" * 40, "max_failed_logins": 0},
        {"secret_key": "k" * 40, "min_password_length": 20, "max_password_length": 10},
        {"secret_key": "k" * 40, "password_hasher": "argon2"},
        {"secret_key": "k" * 40, "cookie": {"name": "x"}},
        # A touch interval at or past the idle timeout would log active users out.
        {"secret_key": "k" * 40, "session_idle_timeout": 60, "session_touch_interval": 60},
        {"secret_key": "k" * 40, "session_idle_timeout": 60, "session_touch_interval": 600},
    ],
)
def test_bad_config_is_refused(settings: dict[str, object]) -> None:
    """Each wrong setting raises ConfigurationError (a ValueError) at construction."""
    with pytest.raises(ConfigurationError) as info:
        AuthConfig(**settings)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_durations_accept_timedelta_and_seconds() -> None:
    """Durations may be seconds or timedeltas."""
    AuthConfig(secret_key="k" * 40, access_token_ttl=timedelta(minutes=5), refresh_token_ttl=60)


@pytest.mark.parametrize(
    "settings",
    [
        {"name": "__Host-sid", "secure": False},
        {"name": "__Host-sid", "path": "/app"},
        {"name": "__Host-sid", "domain": "example.com"},
        {"name": "__Secure-sid", "secure": False},
        {"same_site": "none", "secure": False},
        {"same_site": "sometimes"},
        {"name": "bad name"},
        {"name": ""},
    ],
)
def test_bad_cookie_config(settings: dict[str, object]) -> None:
    """Cookie prefixes and SameSite rules are checked when the config is built."""
    with pytest.raises(ConfigurationError):
        CookieConfig(**settings)  # type: ignore[arg-type]


def test_cookie_defaults_are_safe() -> None:
    """Cookies default to Secure and SameSite=Lax; a valid __Host- cookie is accepted."""
    cookie = CookieConfig()
    assert cookie.secure and cookie.same_site == "lax"
    CookieConfig(name="__Host-sid")


@pytest.mark.parametrize("factory", [make_token, make_session, make_user])
def test_models_json_round_trip(factory: object) -> None:
    """Every model survives to_json/from_json unchanged."""
    record = factory()  # type: ignore[operator]
    assert type(record).from_json(record.to_json()) == record


def test_audit_event_round_trip() -> None:
    """Audit events survive JSON with all fields."""
    event = AuditEvent(
        action="login",
        outcome=False,
        user_id="u",
        ip_address="::1",
        user_agent="ua",
        resource="/x",
        metadata={"reason": "locked"},
    )
    assert AuditEvent.from_json(event.to_json()) == event


def test_token_json_never_has_raw_tokens() -> None:
    """Raw token strings are excluded from repr, equality and JSON."""
    token = dataclasses.replace(make_token(), access_token="RAW-ACCESS", refresh_token="RAW-R")
    for text in (repr(token), token.to_json()):
        assert "RAW-ACCESS" not in text and "RAW-R" not in text
    assert token == token.stored() and token.stored().access_token == ""
    assert token.access_digest.hex() not in repr(token)


def test_models_refuse_naive_datetimes() -> None:
    """Naive datetimes are refused: every stored time is aware UTC."""
    with pytest.raises(ValueError):
        make_token(now=datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        AuthToken.from_dict({**make_token().to_dict(), "expires_at": "2030-01-01T00:00:00"})


def test_password_hash_not_in_repr() -> None:
    """A user's password hash never shows in its repr."""
    user = make_user()
    assert user.password_hash not in repr(user)


def test_session_json_requires_json_data() -> None:
    """Session data that is not JSON-serialisable fails loudly."""
    with pytest.raises(TypeError):
        make_session(data={"x": object()}).to_json()
    assert SessionData.from_json(make_session().to_json()).data == {"cart": [1, 2]}
    assert UserRecord.from_dict(make_user().to_dict()).user_id == "alice"


def test_error_tree() -> None:
    """Every error derives from AuthmwError and carries context, not secrets."""
    assert issubclass(InvalidToken, AuthmwError) and issubclass(StorageUnavailable, AuthmwError)
    err = StorageUnavailable("redis", "get_token", "connection refused")
    assert err.backend == "redis" and "get_token" in str(err)
    assert InvalidToken("expired", token_id="abc").reason == "expired"


# -- storage_from_url ----------------------------------------------------------------------


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend whose driver is not installed raises ConfigurationError saying what to install."""
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    for name in list(sys.modules):  # the backend packages and every module in them
        if name.startswith(("authmw.storage.redis", "authmw.storage.postgres")):
            monkeypatch.delitem(sys.modules, name)
    for url, extra in (("redis://localhost", "redis"), ("postgresql://localhost/db", "postgres")):
        with pytest.raises(ConfigurationError) as info:
            storage_from_url(url)
        assert f"pip install 'authmw[{extra}]'" in str(info.value)


def test_memory_url() -> None:
    """memory:// builds an in-memory storage, with optional settings in the query."""
    assert isinstance(storage_from_url("memory://"), InMemoryStorage)
    storage = storage_from_url("memory://?cleanup_interval=60&default_ttl=30")
    assert isinstance(storage, InMemoryStorage)
    assert storage.config == InMemoryConfig(cleanup_interval=60.0, default_ttl=30.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/db", "unknown storage scheme 'mysql'"),
        ("localhost:6379", "scheme://"),
        ("memory://?colour=blue", "colour"),
        ("memory://?default_tll=3", "did you mean 'default_ttl'"),
        ("memory://?default_ttl=soon", "not a number"),
        ("memory://?default_ttl=-1", "positive"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    """Unknown schemes and bad options raise ConfigurationError naming the problem."""
    with pytest.raises(ConfigurationError, match=message):
        storage_from_url(url)


def test_in_memory_builder() -> None:
    """The guide's builder and with_config shorthand configure the storage."""
    built = InMemoryConfig().with_cleanup_interval(60).with_default_ttl(timedelta(minutes=30))
    storage = built.build()
    assert storage.config.cleanup_interval == 60
    assert InMemoryStorage.with_config(300, 3600).config.default_ttl == 3600
    with pytest.raises(ConfigurationError):
        InMemoryConfig(cleanup_interval=0)
