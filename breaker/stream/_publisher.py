"""The stream's publisher: one thread per app or server renders each interval once and hands it to every client.

Each client is a `Subscriber` with a bounded buffer of intervals (``deque(maxlen=buffer)``: past it the oldest
are dropped, never the latest) and a way to wake its writer: a `threading.Event` for a request thread
(`ThreadSubscriber`), ``loop.call_soon_threadsafe`` for an asyncio task (`AsyncSubscriber`). The publisher never
writes to a socket, so a slow client cannot hold it up; it reads ``statistics()`` only. Its thread starts with the
first client and is told to stop when the last one leaves; `Publisher.close` ends every stream and waits for it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TypeAlias

from breaker import Circuit
from breaker import circuits as current_circuits
from breaker._core.validation import positive_int, seconds

from ._hystrix import PING, render

__all__ = ["AsyncSubscriber", "Publisher", "StreamStatistics", "Subscriber", "ThreadSubscriber", "seconds"]

logger = logging.getLogger("breaker")

Circuits: TypeAlias = Callable[[], Iterable[Circuit]]


@dataclasses.dataclass(frozen=True, slots=True)
class StreamStatistics:
    """A snapshot of a stream's publisher.

    Attributes:
        clients: Clients connected now.
        rejected: Clients answered 503 (too many, or the stream was closed) since the start.
        dropped: Intervals dropped from slow clients' buffers since the start.
        published: Intervals published since the start.
        running: Whether the publisher thread runs (it does while a client is connected).
    """

    clients: int
    rejected: int
    dropped: int
    published: int
    running: bool


class Subscriber:
    """One client: the intervals not yet written out (the oldest dropped past ``buffer``) and its writer's wake-up.

    The publisher thread is the only one that appends; the client's writer is the only one that takes.
    ``deque.append`` with a ``maxlen`` and ``deque.popleft`` are atomic, so the buffer needs no lock.
    """

    __slots__ = ("_queue", "closed", "dropped", "gone")

    def __init__(self, buffer: int) -> None:
        self._queue: collections.deque[bytes] = collections.deque(maxlen=buffer)
        self.dropped = 0
        self.closed = False  # the stream was closed: end the response
        self.gone = False  # the client went away: stop writing

    def offer(self, payload: bytes) -> bool:
        """Queue one interval (the publisher thread). False: the client can never read it; drop the client."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(payload)
        return self.wake()

    def take(self) -> bytes:
        chunks = []
        with contextlib.suppress(IndexError):
            while True:
                chunks.append(self._queue.popleft())
        return b"".join(chunks)

    def end(self) -> None:
        self.closed = True
        self.wake()

    def wake(self) -> bool:
        raise NotImplementedError


class ThreadSubscriber(Subscriber):
    __slots__ = ("_event",)

    def __init__(self, buffer: int) -> None:
        super().__init__(buffer)
        self._event = threading.Event()

    def wake(self) -> bool:
        self._event.set()
        return True

    def next(self) -> bytes | None:
        """Wait for the next intervals; None once the stream is closed."""
        while not self.closed:
            self._event.clear()  # before looking: a wake-up from now on is not lost
            payload = self.take()
            if payload:
                return payload
            if self.closed:
                break
            self._event.wait()
        return None


class AsyncSubscriber(Subscriber):
    __slots__ = ("_event", "_loop")

    def __init__(self, buffer: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(buffer)
        self._loop = loop
        self._event = asyncio.Event()

    def wake(self) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # the loop is closed: nobody will ever read this client's buffer
            return False
        return True

    def leave(self) -> None:
        """The client disconnected (called on the loop)."""
        self.gone = True
        self._event.set()

    async def next(self) -> bytes | None:
        """Wait for the next intervals; None once the stream is closed or the client gone."""
        while not (self.closed or self.gone):
            self._event.clear()  # before looking: a wake-up from now on is not lost
            payload = self.take()
            if payload:
                return payload
            if self.closed or self.gone:
                break
            await self._event.wait()
        return None


def join_all(threads: Iterable[threading.Thread]) -> None:
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join()


async def acquire(lock: threading.Lock) -> bool:
    """Take ``lock`` from the event loop without blocking it: yield while a thread holds it (a few field updates).

    Returns:
        Whether the task was cancelled meanwhile: the caller finishes its update, then raises CancelledError.
    """
    cancelled = False
    while not lock.acquire(blocking=False):
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:  # noqa: PERF203 - the loop turns only while a thread holds the lock
            cancelled = True
    return cancelled


class Publisher:
    """Renders every interval once and hands it to every client; runs its thread while it has clients."""

    def __init__(
        self,
        interval: float | timedelta,
        max_clients: int,
        buffer: int,
        circuits: Circuits | None,
        group: Callable[[str], str] | None,
        clock: Callable[[], float],
    ) -> None:
        self.interval = seconds("interval", interval)
        self.max_clients = positive_int("max_clients", max_clients)
        self.buffer = positive_int("buffer", buffer)
        self._circuits = current_circuits if circuits is None else circuits
        self._group = group
        self._clock = clock
        # Guards the client list, the thread handles and the counters: request threads (and tasks) subscribe and
        # leave while the publisher thread copies the list each interval. Held for a few field updates only.
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._running: tuple[threading.Thread, threading.Event] | None = None
        self._stopped: list[threading.Thread] = []  # told to stop, not yet waited for
        self._closed = False
        self._rejected = self._dropped = self._published = 0

    def __repr__(self) -> str:
        return f"<Publisher {self.describe()} {self.statistics()}>"

    def describe(self) -> str:
        """The options, for the owner's repr."""
        return f"interval={self.interval:g}s max_clients={self.max_clients} buffer={self.buffer}"

    def statistics(self) -> StreamStatistics:
        """Clients connected, rejected and counters."""
        with self._lock:  # a consistent view of the clients and counters
            return StreamStatistics(
                clients=len(self._subscribers),
                rejected=self._rejected,
                dropped=self._dropped + sum(s.dropped for s in self._subscribers),
                published=self._published,
                running=self._running is not None,
            )

    # -- clients come and go --------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> bool:
        """Add a client; False (answer 503) past ``max_clients`` or once closed."""
        with self._lock:  # the count check, the add and the thread start are one step
            return self._subscribe(subscriber)

    async def asubscribe(self, subscriber: Subscriber) -> bool:
        """`subscribe` from the event loop: the lock is taken without blocking the loop."""
        cancelled = await acquire(self._lock)
        try:
            added = self._subscribe(subscriber)
        finally:
            self._lock.release()
        if cancelled:
            if added:
                await self.aunsubscribe(subscriber)
            raise asyncio.CancelledError
        return added

    def _subscribe(self, subscriber: Subscriber) -> bool:
        if self._closed or len(self._subscribers) >= self.max_clients:
            self._rejected += 1
            return False
        self._subscribers.append(subscriber)
        if self._running is None:
            stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(stop,), name="breaker-stream-publisher", daemon=True)
            thread.start()
            self._running = thread, stop
            self._stopped = [t for t in self._stopped if t.is_alive()]
        return True

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Remove a client; the last one out stops the publisher thread and waits for it."""
        with self._lock:  # the remove and the thread stop are one step
            stopped = self._unsubscribe(subscriber)
        if stopped is not None and stopped is not threading.current_thread():
            stopped.join()  # outside the lock: the thread takes it once more on its way out at most

    async def aunsubscribe(self, subscriber: Subscriber) -> None:
        """`unsubscribe` from the event loop: the stopped thread is left to `close` to wait for."""
        cancelled = await acquire(self._lock)
        try:
            stopped = self._unsubscribe(subscriber)
            if stopped is not None:
                self._stopped.append(stopped)
        finally:
            self._lock.release()
        if cancelled:
            raise asyncio.CancelledError

    def _unsubscribe(self, subscriber: Subscriber) -> threading.Thread | None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
            self._dropped += subscriber.dropped
        if self._subscribers or self._running is None:
            return None
        thread, stop = self._running
        self._running = None
        stop.set()
        return thread

    def close(self) -> None:
        """End every stream (their responses finish) and stop the publisher thread; refuse new clients."""
        with self._lock:  # no client or thread slips in after this
            subscribers, threads = self._close()
        for subscriber in subscribers:
            subscriber.end()
        join_all(threads)

    async def aclose(self) -> None:
        """`close` from the event loop, never blocking it: the thread is joined on the loop's executor."""
        cancelled = await acquire(self._lock)
        try:
            subscribers, threads = self._close()
        finally:
            self._lock.release()
        for subscriber in subscribers:
            subscriber.end()
        if threads:  # joined on a worker of the loop's executor: a join would block the loop
            await asyncio.to_thread(join_all, threads)
        if cancelled:
            raise asyncio.CancelledError

    def _close(self) -> tuple[list[Subscriber], list[threading.Thread]]:
        self._closed = True
        threads, self._stopped = self._stopped, []
        if self._running is not None:
            thread, stop = self._running
            self._running = None
            stop.set()
            threads.append(thread)
        return list(self._subscribers), threads

    # -- the publisher thread -------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                payload = render(self._circuits(), int(self._clock() * 1000), group=self._group)
            except Exception:
                logger.exception("the Hystrix stream could not read the circuits; this interval only pings")
                payload = PING
            with self._lock:  # a copy: clients come and go while the payload is handed out
                subscribers = tuple(self._subscribers)
                self._published += 1
            gone = [s for s in subscribers if not s.offer(payload)]
            if gone:
                with self._lock:  # the same step as unsubscribe; this thread cannot wait for itself
                    for subscriber in gone:
                        stopped = self._unsubscribe(subscriber)
                        if stopped is not None:
                            self._stopped.append(stopped)
            stop.wait(self.interval)
