"""Storage URLs: the one scheme table, the one parser and the one redaction rule.

Every storage URL and every config ``repr`` goes through this module, so there is exactly one
answer to "which backend serves this scheme" and "what part of a URL is a secret":

* the password of the user info (``redis://user:PASSWORD@host``);
* the value of every query parameter whose name says it is a secret: a name containing
  ``pass`` (``password``, ``sslpassword``, ``sentinel_password``, ``passphrase``), ``secret``
  or ``token``. File paths (``sslkey``, ``sslcert``) and prefixes (``key_prefix``) are not
  secrets and stay readable.

Nothing here imports a driver.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from ..errors import ConfigurationError

__all__ = [
    "SCHEMES",
    "Backend",
    "Endpoint",
    "ParsedUrl",
    "backend_for",
    "is_secret_option",
    "parse_url",
    "redact_url",
    "scrub",
    "secrets_of",
    "unknown_option",
]

MASK = "***"
_SECRET_WORDS = ("pass", "secret", "token")


@dataclass(frozen=True, slots=True)
class Backend:
    """Where the backend of a scheme lives: module, class and the pip extra it needs."""

    name: str
    module: str
    cls: str
    extra: str | None


_MEMORY = Backend("memory", "authmw.storage.memory", "InMemoryStorage", None)
_REDIS = Backend("redis", "authmw.storage.redis", "RedisStorage", "redis")
_POSTGRES = Backend("postgres", "authmw.storage.postgres", "PostgresStorage", "postgres")

SCHEMES: dict[str, Backend] = {
    "memory": _MEMORY,
    "redis": _REDIS,
    "rediss": _REDIS,
    "unix": _REDIS,
    "redis+sentinel": _REDIS,
    "redis+cluster": _REDIS,
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
}
"""URL scheme -> backend: the one place a scheme is tied to a backend."""


# Control characters shown escaped (as "\\x00") in the error that names them.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


def backend_for(url: object, expected: str | None = None) -> Backend:
    """The backend serving ``url``'s scheme; ``ConfigurationError`` naming the known schemes
    when there is none (or when it is not the ``expected`` backend's)."""
    if not isinstance(url, str) or "://" not in url:
        known = ", ".join(sorted(SCHEMES))
        raise ConfigurationError(
            f"storage URL must look like scheme://..., got {_shown(url)}; known schemes: {known}"
        )
    # Checked once here for every backend: a control character (NUL reaches the OS as an
    # "embedded null character") or a URL urllib cannot split ("memory://[") is refused with
    # one clear error before any backend parses it.
    if any(ord(char) < 0x20 or char == "\x7f" for char in url):
        raise ConfigurationError(
            f"storage URL holds a control character: {redact_url(url.translate(_CONTROLS))}"
        )
    try:
        urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"storage URL cannot be parsed: {exc}") from None
    scheme = url.split("://", 1)[0].lower()
    backend = SCHEMES.get(scheme)
    if expected is not None and (backend is None or backend.name != expected):
        mine = ", ".join(f"{s}://" for s, b in SCHEMES.items() if b.name == expected)
        raise ConfigurationError(f"a {expected} URL starts with {mine}; got {redact_url(url)}")
    if backend is None:
        known = ", ".join(sorted(SCHEMES))
        raise ConfigurationError(f"unknown storage scheme {scheme!r}; known schemes: {known}")
    return backend


def _shown(value: object) -> str:
    return repr(redact_url(value)) if isinstance(value, str) else type(value).__name__


# -- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ``host:port``."""

    host: str
    port: int


@dataclass(frozen=True, slots=True, repr=False)
class ParsedUrl:
    """A storage URL split into what the backends need (the netloc may list several hosts).

    Its ``repr`` follows the one redaction rule: no password, secret query values as ``***``.
    """

    scheme: str
    username: str | None
    password: str | None = field(repr=False)
    hosts: tuple[Endpoint, ...]
    path: tuple[str, ...]
    query: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:
        query = tuple((k, MASK if is_secret_option(k) else v) for k, v in self.query)
        password = None if self.password is None else MASK
        return (
            f"ParsedUrl(scheme={self.scheme!r}, username={self.username!r}, "
            f"password={password!r}, hosts={self.hosts!r}, path={self.path!r}, query={query!r})"
        )


def parse_url(url: str, default_port: int) -> ParsedUrl:
    """Split a URL whose netloc may list several ``host:port`` pairs (sentinels, a cluster).

    Raises ``ConfigurationError`` (showing the URL redacted) for a malformed URL or port.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"malformed storage URL {redact_url(url)}: {exc}") from None
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    items = hostlist.split(",")
    if len(items) > 1 and not all(items):
        # "h1,,h2" or "h," : the drivers fail on the empty entry deep inside their parsers.
        raise ConfigurationError(f"storage URL {redact_url(url)}: an empty host in the host list")
    hosts = []
    for item in filter(None, items):
        host, port = item, default_port
        port_text = ""
        if item.startswith("["):  # [::1]:6379
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
        if port_text:
            try:
                port = int(port_text)
            except ValueError:
                raise ConfigurationError(
                    f"storage URL {redact_url(url)}: bad port {port_text!r}"
                ) from None
            if not 0 < port < 65536:
                raise ConfigurationError(f"storage URL {redact_url(url)}: bad port {port}")
        name = unquote(host)
        try:
            # What the drivers will do to it: a name IDNA cannot encode fails here, named,
            # instead of deep inside a driver's connect.
            name.encode("idna")
        except UnicodeError:
            raise ConfigurationError(
                f"storage URL {redact_url(url)}: bad host name {name!r}"
            ) from None
        hosts.append(Endpoint(name, port))
    path = tuple(p for p in parts.path.split("/") if p)
    query = tuple(parse_qsl(parts.query, keep_blank_values=True))
    return ParsedUrl(parts.scheme.lower(), username, password, tuple(hosts), path, query)


def unknown_option(
    url_kind: str, name: str, listed: Iterable[str], others: Iterable[str] = (), note: str = ""
) -> ConfigurationError:
    """The error for a URL query option that nothing reads: it names the option, suggests the
    closest known one (a misspelling such as ``key_prefx``) and lists ``listed``, so the option
    never reaches a driver as a ``TypeError`` or a server error that looks like an outage.
    ``others`` are known too (a driver's many options) but only suggested, not listed."""
    names = sorted(set(listed))
    close = difflib.get_close_matches(name, [*names, *others], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigurationError(
        f"{url_kind} URL option {name!r} is unknown{hint}; valid options: {', '.join(names)}"
        + (f"; {note}" if note else "")
    )


# -- secrets ----------------------------------------------------------------------------------


def is_secret_option(name: str) -> bool:
    """Whether a URL query parameter holds a secret (its value is never shown)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact_url(url: str) -> str:
    """``url`` with the user-info password and every secret query value shown as ``***``."""
    try:
        parts = urlsplit(url)
    except (ValueError, TypeError):
        return "<unparsable URL>"
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hosts}"
    query = parts.query
    if query:
        query = "&".join(
            f"{quote(k, safe='_-.')}={MASK}"
            if is_secret_option(k)
            else f"{quote(k, safe='_-.')}={quote(v, safe='/:,_-.~')}"
            for k, v in parse_qsl(query, keep_blank_values=True)
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(urls: Iterable[str | None]) -> list[str]:
    """The secrets written into ``urls`` (raw and percent-decoded), longest first, to
    :func:`scrub` from messages that may quote them (a driver error echoing a DSN)."""
    found: list[str] = []
    for url in urls:
        if not url:
            continue
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            raw = userinfo.partition(":")[2]
            found += [raw, unquote(raw)]
        found += [v for k, v in parse_qsl(parts.query) if is_secret_option(k)]
        # As written too: a message may quote the URL's query before it was decoded.
        for item in parts.query.split("&"):
            name, sep, raw = item.partition("=")
            if sep and is_secret_option(unquote(name)):
                found.append(raw)
    # Longest first, so a secret containing another is masked whole; very short values would
    # mask innocent text and are too weak to matter.
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
