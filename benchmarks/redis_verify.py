"""RedisStorage operations beside bare redis-py on pools of the same size: the physical limit.

With ``miss_callers`` concurrent callers (64):

* ``get_token`` (what a verification costs in storage) beside a bare ``GET`` of a value the
  size of a token record (target from the Redis issue: at least 50 % of the bare rate);
* ``store_token`` (what issuing costs in storage: the record and its indexes) beside a bare
  ``SET`` with an expiry of a value of the same size (target: at least 30 %).

Run alone: ``python -m benchmarks.redis_verify [--quick]``.
"""

from __future__ import annotations

import random

from authmw import AuthToken
from authmw.storage import AuthStorage
from benchmarks._bare import BareRedis
from benchmarks._records import fresh_records, issue_tokens, record_payload, store_all
from benchmarks.context import Context
from benchmarks.report import Row, compare
from benchmarks.timing import Op, interleave, rate

__all__ = ["reader", "run", "writes"]


def reader(storage: AuthStorage, stored_ids: list[str]) -> Op:
    """``get_token`` of a stored record, in a shuffled order."""
    ids = stored_ids[:]
    random.shuffle(ids)
    get, n = storage.get_token, len(ids)

    async def read(i: int) -> object:
        return await get(ids[i % n])

    return read


async def writes(
    storage: AuthStorage, template: AuthToken, budget: int, seconds: float, callers: int
) -> float:
    """Rate of ``store_token`` of records never stored before, made before the clock starts.

    ``budget`` records are made per round; a round that stores more wraps around and
    overwrites (still a full ``store_token``).
    """
    records = fresh_records(template, budget)
    store = storage.store_token

    async def write(i: int) -> None:
        await store(records[i % budget])

    return await rate(write, seconds, callers, batch=20)


async def run(ctx: Context) -> list[Row]:
    """get_token and store_token beside GET and SET."""
    s = ctx.settings
    callers = s.miss_callers
    section = f"Redis storage vs redis-py, {callers} callers, pools of {callers}"
    storage = ctx.redis("ops", pool_size=callers)
    auth = ctx.framework(storage)
    bare = None
    try:
        template = (await issue_tokens(auth, 1))[0]
        records = fresh_records(template, s.tokens)
        await store_all(storage, records)
        read = reader(storage, [r.token_id for r in records])
        bare = BareRedis(ctx, "bare-ops", record_payload(template), callers)
        await bare.fill(s.tokens)
        get, set_ = bare.get(), bare.set()
        r = await interleave(
            s.rounds,
            {
                "get_token": lambda: rate(read, s.seconds, callers, batch=20),
                "GET": lambda: rate(get, s.seconds, callers, batch=20),
                "store_token": lambda: writes(
                    storage, template, s.write_budget, s.seconds, callers
                ),
                "SET": lambda: rate(set_, s.seconds, callers, batch=20),
            },
        )
    finally:
        await auth.close()
        if bare is not None:
            await bare.close()
    return [
        compare(
            section, "get_token", r["get_token"], r["GET"], "redis-py GET", unit="/s", at_least=0.5
        ),
        compare(
            section,
            "store_token",
            r["store_token"],
            r["SET"],
            "redis-py SET",
            unit="/s",
            at_least=0.3,
        ),
    ]


if __name__ == "__main__":
    from benchmarks.harness import standalone

    standalone("redis_verify")
