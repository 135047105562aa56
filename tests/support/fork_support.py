"""Running a test's function in a child made by ``fork()`` (multiprocessing's fork start method), its answer sent
back through a pipe: the child inherits the test's fleet, registry and clients as they are at the fork."""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

WAIT = 30.0  # the bound on the child's answer and exit


def fork_and_run(target: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``target()`` in a child made by ``fork()``: the dict it answers (or fail with its error)."""
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    child = context.Process(target=run_in_child, args=(target, theirs), name="forked-child")
    with warnings.catch_warnings():  # Python 3.12+ warns of fork() in a threaded process: what is tested here
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        child.start()
    try:
        assert ours.poll(WAIT), "the child sent nothing"
        answer: dict[str, Any] = ours.recv()
    finally:
        child.join(WAIT)
        if child.exitcode is None:
            child.kill()
            child.join()
    assert "error" not in answer, answer["error"]
    assert child.exitcode == 0
    return answer


def run_in_child(target: Callable[[], dict[str, Any]], connection: Connection) -> None:
    """The child's body: ``target``'s answer, or its error as text, sent back to the parent."""
    try:
        answer = target()
    except BaseException as error:  # every failure goes back to the test, which fails with it
        answer = {"error": f"{type(error).__name__}: {error}"}
    connection.send(answer)
    connection.close()
