"""Fits the middleware to web frameworks: :mod:`.fastapi` (dependencies), :mod:`.flask` (AuthMW).

Each module is a thin, framework-idiomatic wrapper that reads what the middleware put on the
request; nothing is verified twice.
"""
