"""The drivers: they run a call through its circuit's engine, on the caller's thread, a worker or in a task.

Each driver is written once: `caller` (caller isolation), `threaded` (thread isolation and `go()`), `aio`
(async), with `entries` where a call enters and `observe` for calls with collectors. The hot entry points run
from `_generated`, made from them by ``tools/generate.py``. The drivers call `breaker._core.engine.Engine`'s
methods only, and run user code outside every lock of the library.
"""
