"""The README's code and the examples run as documented."""

from __future__ import annotations

import contextlib
import re
import runpy
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from http_servers import dependency

if TYPE_CHECKING:
    from redis_support import RedisServer

pytest_plugins = ["redis_support"]

ROOT = Path(__file__).resolve().parents[2]
README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("source", README_BLOCKS, ids=[f"readme-block-{i}" for i in range(len(README_BLOCKS))])
def test_readme_python_blocks_run(source: str, request: pytest.FixtureRequest) -> None:
    """Every python block of the README runs as written, against a fresh registry (and a real redis-server for the
    blocks that name ``REDIS_PORT``, a real HTTP dependency for those that name ``DEPENDENCY_URL``)."""
    names: dict[str, object] = {"__name__": "__readme__"}
    if "REDIS_PORT" in source:
        server: RedisServer = request.getfixturevalue("redis_server")
        names["REDIS_PORT"] = server.port
    with contextlib.ExitStack() as stack:
        if "DEPENDENCY_URL" in source:
            running = stack.enter_context(dependency())
            names["DEPENDENCY_URL"] = running.url
            names["DEPENDENCY_PORT"] = running.port
        exec(compile(source, "README.md", "exec"), names)


def test_readme_has_blocks() -> None:
    """The README blocks test above found the quickstart (guards against a broken regex)."""
    assert any("@breaker.command" in block for block in README_BLOCKS)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_run(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every script in examples/ runs to completion."""
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out


def test_quickstart_example_output(capsys: pytest.CaptureFixture[str]) -> None:
    """The quickstart example prints what its comments promise."""
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "charged order-1",
        "queued bad-order for later (ConnectionError)",
        "a one-off call",
        "in the background",
    ]
