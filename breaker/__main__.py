"""Command line: ``python -m breaker demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._demo import run_demo


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m breaker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="watch a circuit trip, fail fast, probe and recover")
    demo.add_argument("--speed", type=float, default=1.0, help="run the story this many times faster")
    args = parser.parse_args(argv)
    if args.command == "demo":
        outcomes = run_demo(sys.stdout, speed=args.speed)
        print("outcomes:", ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
