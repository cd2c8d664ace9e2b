"""The synchronous fast path of :class:`authmw.AuthFramework`: answers that need no I/O.

With a storage that can answer from process memory (``SupportsNowaitReads``: a
:class:`~authmw.storage.cached.CachedStorage`), a cached token or session is checked without an
event loop, so ``WSGIAuthMiddleware`` serves cache hits on the request's own thread instead of
handing every request to its loop thread. Everything else (a miss, a due session touch) returns
None and the caller takes the async path. The checks are :meth:`AuthFramework.verify`'s and
:meth:`AuthFramework.get_session`'s, repeated rather than shared: those are the hot paths of
the async front, where one more call per request shows in the benchmarks.
"""

from __future__ import annotations

from datetime import timedelta

from .errors import InvalidToken
from .models import AuthToken, SessionData, utcnow
from .storage.base import MISS, SupportsNowaitReads
from .tokens import ACCESS, SESSION, TokenCodec, verifier_matches

__all__ = ["NowaitPaths"]


class NowaitPaths:
    """``verify_nowait`` and ``get_session_nowait`` for :class:`authmw.AuthFramework`."""

    # Set by AuthFramework.__init__ / open().
    _nowait: SupportsNowaitReads | None
    _open: bool
    _verified: dict[str, str]
    _codec: TokenCodec
    _touch_every: timedelta

    def _remember(self, access_token: str, token_id: str) -> None:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _usable(record: AuthToken) -> AuthToken:  # pragma: no cover - AuthFramework's
        raise NotImplementedError

    @property
    def can_answer_nowait(self) -> bool:
        """True when the storage can answer from memory, so the ``*_nowait`` methods may
        return answers; False when they always return None."""
        return self._nowait is not None

    def verify_nowait(self, access_token: str) -> AuthToken | None:
        """:meth:`verify` without I/O, from any thread: the record when the storage could
        answer from memory, None when only :meth:`verify` can tell (a cache miss, a storage
        without a memory path, a framework not opened yet).

        Raises ``InvalidToken`` as :meth:`verify` does; junk and forged tokens are refused here
        whatever the storage.
        """
        nowait = self._nowait
        if nowait is None or not self._open:
            return None
        token_id = self._verified.get(access_token)
        if token_id is not None:
            record = nowait.get_token_nowait(token_id)
            if record is MISS:
                return None
            if record is None:
                raise InvalidToken("unknown", token_id=token_id)
        else:
            token_id, verifier = self._codec.parse(access_token, ACCESS)
            record = nowait.get_token_nowait(token_id)
            if record is MISS:
                return None
            if record is None or not verifier_matches(verifier, record.access_digest):
                raise InvalidToken("unknown", token_id=token_id)
            self._remember(access_token, token_id)
        return self._usable(record)

    def get_session_nowait(self, session_id: str) -> SessionData | None:
        """:meth:`get_session` without I/O, from any thread: the session when the storage could
        answer from memory and no ``last_accessed`` write is due, None when only
        :meth:`get_session` can tell. Raises ``InvalidToken`` as :meth:`get_session` does."""
        nowait = self._nowait
        if nowait is None or not self._open:
            return None
        selector, verifier = self._codec.parse(session_id, SESSION)
        session = nowait.get_session_nowait(selector)
        if session is MISS:
            return None
        if session is None or not verifier_matches(verifier, session.verifier_digest):
            raise InvalidToken("unknown", token_id=selector)
        if utcnow() - session.last_accessed >= self._touch_every:
            return None  # the touch is a write: get_session does it
        return session
