"""Password hashing with argon2id, off the event loop and bounded in concurrency.

Each hash uses tens of MiB and tens of milliseconds of CPU, so hashing runs in a private thread
pool whose size is the bound (argon2-cffi releases the GIL while it works). Unknown users are
checked against a dummy hash with the same parameters, so they cost what a wrong password costs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .errors import InvalidInput

__all__ = ["PasswordManager", "check_password_rules", "default_password_hasher"]

log = logging.getLogger("authmw.passwords")


def default_password_hasher() -> PasswordHasher:
    """argon2-cffi's defaults: argon2id, RFC 9106 low-memory profile (64 MiB, t=3, p=4)."""
    return PasswordHasher()


def check_password_rules(password: object, *, min_length: int, max_bytes: int, new: bool) -> str:
    """The password rules, in one place; ``password`` back when it passes.

    * a ``str`` (anything else: ``InvalidInput``);
    * at most ``max_bytes`` bytes of UTF-8 (``AuthConfig.max_password_length``, default
      1,024): argon2 hashes the whole input, so a megabyte password would cost a megabyte of
      hashing per guess, a denial of service;
    * valid Unicode: a lone surrogate (``"\\ud800"``, which some JSON decoders let through)
      cannot be encoded, so it is refused rather than hashed in some lossy form;
    * no NUL character: C libraries and other password stores cut strings there, so a
      password with one would not mean the same everywhere;
    * for a new password (registration, change, reset) at least ``min_length`` characters
      (code points; ``AuthConfig.min_password_length``, default 8). Logins skip this bound,
      so raising it never locks out users with older, shorter passwords.

    Nothing is trimmed or normalised: the password is hashed exactly as given.
    """
    if not isinstance(password, str):
        raise InvalidInput("password", "must be a string")
    # Each character is at least one byte: a huge input is refused before it is encoded.
    if len(password) > max_bytes:
        raise InvalidInput("password", f"longer than {max_bytes} bytes of UTF-8")
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("password", "is not valid Unicode text (a lone surrogate)") from None
    if size > max_bytes:
        raise InvalidInput("password", f"longer than {max_bytes} bytes of UTF-8")
    if "\x00" in password:
        raise InvalidInput("password", "contains a NUL character")
    if new and len(password) < min_length:
        raise InvalidInput("password", f"shorter than {min_length} characters")
    return password


class PasswordManager:
    """Hashes and verifies passwords in at most ``max_concurrent`` worker threads."""

    def __init__(self, hasher: PasswordHasher | None = None, max_concurrent: int = 2) -> None:
        self.hasher = hasher or default_password_hasher()
        self._executor = ThreadPoolExecutor(max_concurrent, thread_name_prefix="authmw-argon2")
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    def __repr__(self) -> str:
        h = self.hasher
        return f"PasswordManager(argon2id t={h.time_cost} m={h.memory_cost} p={h.parallelism})"

    async def _run(self, fn: object, *args: str) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)  # type: ignore[arg-type]

    async def hash(self, password: str) -> str:
        """An argon2id PHC string for ``password``."""
        result = await self._run(self.hasher.hash, password)
        assert isinstance(result, str)
        return result

    def _verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False
        except InvalidHashError:
            # A corrupt stored hash must not let anyone in, nor crash the login path.
            log.error("stored password hash is not a valid argon2 hash; refusing login")
            return False
        except VerificationError:
            return False

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``password_hash``. Never raises for a mismatch."""
        return bool(await self._run(self._verify_sync, password_hash, password))

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than the current hasher's."""
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _dummy(self) -> str:
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
            return self._dummy_hash

    async def warm(self) -> None:
        """Make the dummy hash now (off the loop), so the first unknown-user login costs what
        later ones do: a first login slower than the rest would tell unknown users apart."""
        await self._run(self._dummy)

    async def burn(self, password: str) -> bool:
        """Spend the work of one verification for an unknown user; always False."""

        def work() -> bool:
            self._verify_sync(self._dummy(), password)
            return False

        await self._run(work)
        return False

    def close(self) -> None:
        """Stop the worker threads (waiting for running hashes)."""
        self._executor.shutdown(wait=True)
