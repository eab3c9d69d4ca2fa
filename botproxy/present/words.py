"""Counts in words for people: `counted(1, "session")` is "1 session", `counted(2, "session")` "2 sessions"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular for exactly one; `plural` where adding an "s" is not it ("activities")."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
