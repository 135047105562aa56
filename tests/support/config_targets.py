"""What the configure_from tests name by import path: exception types and result predicates."""

from __future__ import annotations


class BadRequest(Exception):
    """A caller's mistake."""


class Outer:
    """A class holding the names below, for paths that go through an attribute."""

    class NotFound(LookupError):
        """A nested exception type."""

    @staticmethod
    def is_empty(result: object) -> bool:
        """A nested predicate: an empty result is a failure."""
        return result == ""


def is_error(result: object) -> bool:
    """A predicate: a result that says "error" is a failure."""
    return result == "error"


def two_args(first: object, second: object) -> bool:
    """Not a predicate: it takes two values."""
    return first == second


NOT_AN_EXCEPTION = 42
