"""The marker of functions that the code generator copies into the drivers' generated fast paths.

`inline` changes nothing at run time. ``tools/generate.py`` reads the source of every function so marked and,
in the generated modules of `breaker._run`, replaces calls to it with its body: one Python frame fewer per call
on the hot paths, while the function stays the one place its logic is written. An inlined function must have
a single exit (no ``return`` before its last statement), so that its body can stand where the call stood.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["inline"]

F = TypeVar("F", bound=Callable[..., object])


def inline(fn: F) -> F:
    """Mark ``fn`` for inlining into the generated drivers; returns it unchanged."""
    return fn
