"""Backend fixtures for the one behaviour suite.

Each module here is loaded as a pytest plugin by ``tests/conftest.py`` and declares
``BACKENDS: dict[str, str]``: a test-id (``"memory"``, ``"redis"``, ...) mapped to the name of a
function-scoped async fixture in the same module that yields an opened, empty, isolated
``AuthStorage`` and cleans up after the test. Adding a backend to every behaviour test is adding
one module (or one entry) here.
"""
