"""authmw's benchmark harness: ``python -m benchmarks`` or ``scripts/bench``.

One command runs authmw beside its peers (Starlette's own middleware, starsessions,
fastapi-users, Flask-Login, Flask-Session, the bare Redis and PostgreSQL drivers) in one run,
in interleaved rounds, and prints one table; see :mod:`benchmarks.harness`. Nothing here is
imported by authmw or its tests, and nothing here asserts a time.

This module stays free of third-party imports: ``python -m benchmarks`` imports it before the
benchmark's own virtualenv exists.
"""
