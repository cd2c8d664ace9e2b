"""The one paging rule of ``list_users`` for backends that filter and sort in Python."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from ..models import UserRecord

__all__ = ["matches", "page_of"]


def matches(user: UserRecord, role: str | None, active: bool | None) -> bool:
    """Whether ``user`` passes the ``role`` and ``active`` filters of ``list_users``."""
    return (role is None or role in user.roles) and (active is None or user.is_active is active)


def page_of(
    users: Iterable[UserRecord],
    *,
    after: str | None,
    limit: int,
    role: str | None,
    active: bool | None,
) -> list[UserRecord]:
    """The page ``list_users`` answers from ``users`` (any order): the ``limit`` smallest ids
    above ``after`` among those passing the filters, ascending by code point."""
    kept = (u for u in users if (after is None or u.user_id > after) and matches(u, role, active))
    # A heap, not a full sort: a page of 100 out of a million users stays cheap.
    return heapq.nsmallest(max(0, limit), kept, key=lambda u: u.user_id)
