"""Types of the shared database fixtures (``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

#: ``await make_database("label")`` → the URL of a new empty database.
MakeDatabase = Callable[[str], Awaitable[str]]
