"""Command line: ``python -m breaker demo`` and ``python -m breaker dashboard``."""

from __future__ import annotations

import argparse
import inspect
import math
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence

from . import dashboard
from ._demo import DemoOptions, run_demo
from ._demo.load import LoadOptions

DEFAULT_DURATION = 30.0


def _duration(text: str) -> float:
    """Seconds, as hey writes them too: ``30``, ``30s``, ``2m``, ``500ms``."""
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * scale
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 2m, 500ms)") from None


def _positive_duration(text: str) -> float:
    """A `_duration` above 0 (and finite): a bound of the dashboard's server."""
    value = _duration(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive duration (e.g. 5s, 500ms), got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """A whole number of at least 1: a count bound of the dashboard's server."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _outage(text: str) -> tuple[float, float]:
    start, colon, length = text.partition(":")
    try:
        if not colon:
            raise ValueError
        return float(start), float(length)
    except ValueError:
        raise ValueError(f"--outage must be START:LENGTH in seconds, e.g. 8:10, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m breaker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="drive load through circuit breakers at a flaky service: outage, fail fast, probe, recovery",
        description="Drive load (as the hey tool does) through circuit breakers at two flaky HTTP services on "
        "loopback; one goes down and recovers. With no -n or -z it runs for 30 s.",
    )
    demo.add_argument("-n", type=int, metavar="N", help="requests to make in all (ignored with -z)")
    demo.add_argument("-c", type=int, default=8, metavar="C", help="concurrent workers (default 8)")
    demo.add_argument("-q", type=float, default=20.0, metavar="Q", help="rate limit per worker, calls/s (default 20)")
    demo.add_argument("-z", type=_duration, metavar="DURATION", help="run for this long, e.g. 30s (default 30s)")
    demo.add_argument("--outage", default="8:10", metavar="START:LENGTH", help="seconds (default 8:10)")
    demo.add_argument("--outage-mode", choices=("hang", "error"), default="hang", help="default hang")
    demo.add_argument("--latency", type=_duration, default=0.02, help="a healthy answer's latency (default 20ms)")
    demo.add_argument("--error-rate", type=float, default=0.02, help="share of errors when healthy (default 0.02)")
    demo.add_argument("--timeout", type=_duration, default=0.25, help="each command's timeout (default 250ms)")
    demo.add_argument("--port", type=int, default=8000, help="the dashboard's port (default 8000; 0: any free)")
    demo.add_argument("--no-dashboard", action="store_true", help="serve no dashboard")
    demo.add_argument("--seed", type=int, help="seed the services' errors")

    board = commands.add_parser(
        "dashboard",
        help="serve the live dashboard (and this process's stream)",
        description="Serve the dashboard at / and the Hystrix stream at /hystrix.stream. Give --stream to watch "
        "another service's Hystrix stream, and --proxy to have the page read it through /proxy.stream (a browser "
        "reads another origin's stream itself only if that server sends CORS headers, which Java Hystrix does not).",
    )
    board.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    board.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    board.add_argument("--stream", action="append", metavar="URL", help="a Hystrix stream to watch (repeatable)")
    proxy = board.add_mutually_exclusive_group()
    proxy.add_argument(
        "--proxy",
        action="store_true",
        help="relay other origins' streams for the page: the --stream and --allow-upstream URLs only",
    )
    proxy.add_argument("--no-proxy", action="store_true", help="relay nothing (the default; kept for old scripts)")
    board.add_argument(
        "--allow-upstream",
        action="append",
        default=[],
        metavar="URL",
        help="a stream URL the proxy may relay when typed into the page, besides the --stream ones (repeatable; "
        "needs --proxy)",
    )
    board.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the dashboard is reached by, besides its address and localhost (repeatable; others get "
        "403, against DNS rebinding)",
    )
    bounds = board.add_argument_group("bounds on clients", "a client past one is refused (the README's Security)")
    defaults = inspect.signature(dashboard.serve).parameters  # the library's defaults, written once
    for flag, kind, metavar, text in (
        ("--max-connections", _positive_int, "N", "connections at once; one more gets 503"),
        ("--max-clients", _positive_int, "N", "stream clients at once; one more gets 503"),
        ("--header-timeout", _positive_duration, "DURATION", "to send a request line and headers; then 408"),
        ("--max-header-bytes", _positive_int, "N", "size of a request line and headers; then 414 or 431"),
        ("--idle-timeout", _positive_duration, "DURATION", "wait for a request on an open connection; then closed"),
        ("--send-timeout", _positive_duration, "DURATION", "a write to a client that does not read; then dropped"),
    ):
        default = defaults[flag[2:].replace("-", "_")].default
        shown = f"{default:g}s" if kind is _positive_duration else default
        bounds.add_argument(flag, type=kind, default=default, metavar=metavar, help=f"{text} (default {shown})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C stops both commands cleanly, even when started from a script that runs them in the background
        # (a shell starts background jobs with SIGINT ignored, and Python then installs no handler of its own).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.command == "dashboard":
        return _dashboard(parser, args)
    return _demo(parser, args)


def _dashboard(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.allow_upstream and not args.proxy:
        parser.error("--allow-upstream names what the proxy may relay: give --proxy too")
    try:
        server = dashboard.serve(
            args.host,
            args.port,
            block=False,
            streams=args.stream,
            proxy=args.proxy,
            allowed_upstreams=args.allow_upstream,
            allowed_hosts=args.allow_host,
            max_connections=args.max_connections,
            max_clients=args.max_clients,
            header_timeout=args.header_timeout,
            max_header_bytes=args.max_header_bytes,
            idle_timeout=args.idle_timeout,
            send_timeout=args.send_timeout,
        )
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    own = f"{args.host}:{server.port}"
    if not args.proxy and any(urllib.parse.urlsplit(url).netloc not in ("", own) for url in args.stream or []):
        print(
            "note: the page reads a --stream of another origin only if that server sends CORS headers "
            "(Java Hystrix does not); add --proxy to have the dashboard relay it",
            file=sys.stderr,
            flush=True,
        )
    print(f"dashboard: http://{args.host}:{server.port}/  (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)  # the server runs on its own threads; Ctrl-C ends the wait
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        start, length = _outage(args.outage)
        duration = args.z if args.z is not None or args.n is not None else DEFAULT_DURATION
        load = LoadOptions(requests=args.n or 200, concurrency=args.c, rate=args.q or None, duration=duration)
        options = DemoOptions(
            load=load,
            outage_start=start,
            outage_duration=length,
            outage_mode=args.outage_mode,
            latency=args.latency,
            error_rate=args.error_rate,
            timeout=args.timeout,
            port=None if args.no_dashboard else args.port,
            seed=args.seed,
        )
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    run_demo(sys.stdout, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
