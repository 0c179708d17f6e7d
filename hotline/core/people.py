"""People who sign in, and the roles they have (the one list of roles)."""

from __future__ import annotations

from dataclasses import dataclass

OPERATOR, SUPERVISOR, ADMIN, EXECUTOR, LEADERSHIP = (
    "operator", "supervisor", "admin", "executor", "leadership",
)
ROLES = (OPERATOR, SUPERVISOR, ADMIN, EXECUTOR, LEADERSHIP)
#: Who may watch the contact centre live (wallboard, its APIs and feed).
WATCHERS = (SUPERVISOR, ADMIN, LEADERSHIP)
EVERYONE = ROLES


@dataclass(frozen=True)
class Principal:
    """Who is signed in."""

    login: str
    display_name: str
    role: str
