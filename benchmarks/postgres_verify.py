"""PostgresStorage operations beside bare asyncpg on pools of the same size: the physical limit.

With ``miss_callers`` concurrent callers (64) on pools of ``pool_size`` connections each:

* ``get_token`` beside a bare primary-key ``SELECT`` of a row of the same size from a table
  shaped like a token table;
* ``store_token`` beside a bare single-row ``INSERT`` into that table.

No target here: the rows show what authmw's SQL, pool handling and decoding add to the driver.

Run alone: ``python -m benchmarks.postgres_verify [--quick]``.
"""

from __future__ import annotations

from benchmarks._bare import BarePostgres
from benchmarks._records import fresh_records, issue_tokens, record_payload, store_all
from benchmarks.context import Context
from benchmarks.redis_verify import reader, writes
from benchmarks.report import Row, compare
from benchmarks.timing import interleave, rate

__all__ = ["run"]


async def run(ctx: Context) -> list[Row]:
    """get_token and store_token beside SELECT and INSERT."""
    s = ctx.settings
    callers, pool_size = s.miss_callers, s.pool_size
    section = f"PostgreSQL storage vs asyncpg, {callers} callers, pools of {pool_size}"
    storage = ctx.postgres("ops", pool_size=pool_size)
    auth = ctx.framework(storage)
    bare = None
    try:
        template = (await issue_tokens(auth, 1))[0]
        records = fresh_records(template, s.tokens)
        await store_all(storage, records)
        read = reader(storage, [r.token_id for r in records])
        bare = await BarePostgres.create(ctx, "bare_ops", record_payload(template), pool_size)
        await bare.fill(s.tokens)
        select, insert = bare.select(), bare.insert()
        r = await interleave(
            s.rounds,
            {
                "get_token": lambda: rate(read, s.seconds, callers, batch=20),
                "SELECT": lambda: rate(select, s.seconds, callers, batch=20),
                "store_token": lambda: writes(
                    storage, template, s.write_budget, s.seconds, callers
                ),
                "INSERT": lambda: rate(insert, s.seconds, callers, batch=20),
            },
        )
    finally:
        await auth.close()
        if bare is not None:
            await bare.close()
    return [
        compare(section, "get_token", r["get_token"], r["SELECT"], "asyncpg SELECT", unit="/s"),
        compare(section, "store_token", r["store_token"], r["INSERT"], "asyncpg INSERT", unit="/s"),
    ]


if __name__ == "__main__":
    from benchmarks.harness import standalone

    standalone("postgres_verify")
