"""The decision core: settings, events, errors, and the engine of each circuit with its parts.

Standard library only, and no I/O: nothing here starts a thread, sleeps, waits, awaits or calls user code.
The engine's lock is held for a few field updates at a time. Everything that runs a call lives in
`breaker._run`, which calls the core through `breaker._core.engine.Engine`'s methods; the one module where a step
may go without the lock is `breaker._core.lockfree`.
"""
