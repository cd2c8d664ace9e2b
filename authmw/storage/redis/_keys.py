"""The Redis data layout of :class:`authmw.storage.redis.RedisStorage`: key names and times.

``docs/redis.md`` describes it. Every id is written inside ``{...}`` so that Redis Cluster
hashes only the id: a record and the side keys that must change with it (a token and its
rotation marker, a user and the user's index sets) share a slot. Record keys end with ``}``
and side keys never do, which is how a ``SCAN`` pattern tells them apart whatever characters
an id holds. Times (index scores, ``PXAT``) are integer milliseconds since the epoch.
"""

from __future__ import annotations

__all__ = ["KeyLayout", "glob_escape", "ms"]


def ms(ts: float) -> int:
    """A POSIX timestamp as the integer milliseconds of index scores and ``PXAT`` (rounded
    down: a key never outlives it)."""
    return int(ts * 1000)


def glob_escape(text: str) -> str:
    """``text`` with the glob characters of ``SCAN MATCH`` escaped."""
    out = []
    for char in text:
        if char in "*?[]\\":
            out.append("\\")
        out.append(char)
    return "".join(out)


class KeyLayout:
    """Builds every key from the configured prefix (``auth:`` by default)."""

    __slots__ = (
        "audit",
        "family_open",
        "kv_open",
        "prefix",
        "refresh_open",
        "session_open",
        "sessions_suffix",
        "token_open",
        "tokens_suffix",
        "user_open",
    )

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.token_open = f"{prefix}token:{{"
        self.refresh_open = f"{prefix}refresh:{{"
        self.session_open = f"{prefix}session:{{"
        self.user_open = f"{prefix}user:{{"
        self.kv_open = f"{prefix}kv:{{"
        self.family_open = f"{prefix}family:{{"
        self.tokens_suffix = "}:tokens"
        self.sessions_suffix = "}:sessions"
        self.audit = f"{prefix}audit"

    def token(self, token_id: str) -> str:
        """``auth:token:{id}``: the token record as JSON."""
        return f"{self.token_open}{token_id}}}"

    def token_next(self, token_id: str) -> str:
        """``auth:token:{id}:next``: the id of the successor, written by a rotation."""
        return f"{self.token_open}{token_id}}}:next"

    def refresh(self, refresh_id: str) -> str:
        """``auth:refresh:{id}``: refresh selector -> token id."""
        return f"{self.refresh_open}{refresh_id}}}"

    def user(self, user_id: str) -> str:
        """``auth:user:{id}``: the user record as JSON."""
        return f"{self.user_open}{user_id}}}"

    def user_tokens(self, user_id: str) -> str:
        """``auth:user:{id}:tokens``: sorted set of token ids scored by expiry (ms)."""
        return f"{self.user_open}{user_id}{self.tokens_suffix}"

    def user_sessions(self, user_id: str) -> str:
        """``auth:user:{id}:sessions``: sorted set of session ids scored by expiry (ms)."""
        return f"{self.user_open}{user_id}{self.sessions_suffix}"

    def session(self, session_id: str) -> str:
        """``auth:session:{id}``: the session as a hash."""
        return f"{self.session_open}{session_id}}}"

    def family(self, family_id: str) -> str:
        """``auth:family:{id}``: present while the refresh family is revoked (rotations of it
        are refused), expiring with the family's longest-lived token."""
        return f"{self.family_open}{family_id}}}"

    def kv(self, key: str) -> str:
        """``auth:kv:{key}``: raw bytes."""
        return f"{self.kv_open}{key}}}"

    def kv_name(self, redis_key: bytes) -> str:
        """The user's key back from an ``auth:kv:{key}`` Redis key."""
        return redis_key.decode()[len(self.kv_open) : -1]

    # SCAN patterns: a record key is the namespace, the id, then a closing brace.
    def pattern(self, opening: str) -> str:
        """The ``SCAN MATCH`` pattern of every record key in one namespace."""
        return f"{glob_escape(opening)}*}}"

    def index_pattern(self, suffix: str) -> str:
        """The ``SCAN MATCH`` pattern of every per-user index of one kind."""
        return f"{glob_escape(self.user_open)}*{suffix}"
