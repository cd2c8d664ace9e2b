"""The one registry of the Redis backend's Lua scripts, read from the package's ``lua/`` files.

``lua/library.lua`` holds the small functions the scripts share; every other file is one
script, prepended with the library (``kv_incr`` and the two owner reads need none). Two
families of scripts serve two modes, and each mode's importer adds its own:

* single server (plain or behind sentinels): one script per multi-key write. A script runs
  atomically, so each write is all-or-nothing. These scripts build some key names from the
  prefixes they are given (the old refresh index, a user's index), which a single server
  allows and a cluster does not. Imports insert a page of records per script.
* cluster: scripts that touch one hash slot each, run by the caller in a fixed order chosen
  so that a write interrupted half-way never grants access (see ``_writes`` and
  ``docs/redis.md``). Imports go through the same steps, plus ``ses_add`` (insert if absent).

Times are integer milliseconds since the epoch; ``now`` comes from the client, the same clock
the client-side expiry checks use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources

__all__ = ["CLUSTER", "SCRIPTS", "SINGLE_SERVER", "Script", "scripts_for"]


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script: its name, full source (library included) and SHA-1 for ``EVALSHA``."""

    name: str
    source: str = field(repr=False)
    sha: str


def _read(name: str) -> str:
    return resources.files("authmw.storage.redis").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _script(name: str, *, library: bool = True) -> Script:
    source = (_read("library") if library else "") + _read(name)
    return Script(name, source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


SINGLE_SERVER: tuple[str, ...] = (
    "store_token",
    "rotate_token",
    "delete_token",
    "delete_user_tokens",
    "store_session",
    "touch_session",
    "update_session",
    "delete_session",
    "delete_user_sessions",
    "import_tokens",
    "import_sessions",
    "kv_incr",
    "token_owner",
    "session_owner",
)
"""The scripts a single server (plain or behind sentinels) runs."""

CLUSTER: tuple[str, ...] = (
    "idx_raise",
    "idx_set",
    "idx_rem",
    "tok_put",
    "tok_cas",
    "tok_take",
    "ref_set",
    "ref_del",
    "ses_put",
    "ses_touch",
    "ses_update",
    "ses_take",
    "ses_add",
    "kv_incr",
)
"""The scripts a cluster runs: each touches one hash slot."""

# Scripts that use none of the library's functions: each call of a script defines every
# function of its source again, which costs more than these scripts' own work.
_STANDALONE = frozenset({"kv_incr", "token_owner", "session_owner"})

SCRIPTS: dict[str, Script] = {
    name: _script(name, library=name not in _STANDALONE)
    for name in dict.fromkeys((*SINGLE_SERVER, *CLUSTER))
}
"""Every script, by name."""


def scripts_for(cluster: bool) -> dict[str, Script]:
    """The scripts of one mode, by name (what the executor loads at ``open`` and runs)."""
    return {name: SCRIPTS[name] for name in (CLUSTER if cluster else SINGLE_SERVER)}
