"""The worker threads that run thread-isolated calls, and the timer that fires `go()` timeouts.

The pool is elastic: a task goes to an idle worker if there is one, else to a new thread. There is no cap on the
pool itself because every run holds one of its command's tickets, so runs in progress (hung ones included) are
bounded per command by ``max_concurrent_requests``; a fixed-size pool would instead let nested commands (a run that
calls another command) deadlock waiting for each other's workers. Idle workers exit after ``idle_timeout`` seconds,
and `WorkerPool.stop_idle` (called by `breaker.flush`) ends them at once and makes busy ones exit when their run
ends.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

__all__ = ["Timer", "Wake", "Work", "WorkerPool"]

A = TypeVar("A")

#: What wakes whoever waits for a task: called with None (a queue's ``put``).
Wake: TypeAlias = Callable[[None], object]
#: Work for a worker, called as ``work(subject)``. It must not raise. It returns how to wake whoever waits for it,
#: or None: the worker goes back to the idle stack *before* waking them, so a caller making one call after another
#: finds it free again instead of starting a thread each time. (A function and its subject, not a closure: the
#: thread driver's work is a plain function, and a call makes no closure or bound method to hand it over.)
Work: TypeAlias = Callable[[A], "Wake | None"]

_STOP = None
_thread_ids = itertools.count(1)


class WorkerPool:
    """Elastic pool of daemon worker threads, most recently idle first.

    ``_lock`` guards the idle stack, the generation and the thread set: a worker parks itself, a submitter takes
    an idle worker, and `stop_idle` retires every idle one, each in one step under it, so that an idle worker is
    taken by exactly one of them. Held for a list operation at a time: never across a task or a wait.
    """

    def __init__(self, idle_timeout: float = 60.0) -> None:
        self.idle_timeout = idle_timeout
        self._idle: list[queue.SimpleQueue[tuple[Work[Any], Any] | None]] = []
        self._threads: set[threading.Thread] = set()
        self._generation = 0
        self._lock = threading.Lock()  # see the class docstring

    def __repr__(self) -> str:
        return f"<WorkerPool threads={len(self._threads)} idle={len(self._idle)}>"

    @property
    def threads(self) -> int:
        """Worker threads alive now, busy or idle."""
        return len(self._threads)

    def submit(self, work: Work[A], subject: A) -> None:
        """Run ``work(subject)`` on an idle worker, or on a new one.

        Raises:
            RuntimeError: No thread could be started (interpreter shutdown, or the OS refused one).
        """
        lock = self._lock
        lock.acquire()  # an idle worker is taken once (see the class docstring); not `with`: twice as fast here
        try:
            inbox = self._idle.pop() if self._idle else None
            generation = self._generation
        finally:
            lock.release()
        task = (work, subject)
        if inbox is not None:
            inbox.put(task)
            return
        inbox = queue.SimpleQueue()
        # The first task goes through the inbox too: a Thread keeps its args until its target returns, and the
        # worker must not keep its first call (its function, arguments and result) alive for its whole life.
        inbox.put(task)
        del task
        thread = threading.Thread(
            target=self._serve,
            args=(inbox, generation),
            name=f"breaker-worker-{next(_thread_ids)}",
            daemon=True,
        )
        with self._lock:  # the thread set, which flush() and the tests read
            self._threads.add(thread)
        try:
            thread.start()
        except BaseException:
            with self._lock:  # (as above)
                self._threads.discard(thread)
            raise

    def _serve(self, inbox: queue.SimpleQueue[tuple[Work[Any], Any] | None], generation: int) -> None:
        me = threading.current_thread()
        task = inbox.get()  # the task it was started for
        try:
            while task is not None:  # None: _STOP
                work, subject = task
                wake = work(subject)
                del task, work, subject  # nothing of a finished call stays referenced while the worker waits
                lock = self._lock
                lock.acquire()  # park, unless stop_idle() retired this worker's generation meanwhile
                try:
                    retired = generation != self._generation
                    if not retired:
                        self._idle.append(inbox)  # parked before waking the caller: its next call finds it
                finally:
                    lock.release()
                if wake is not None:
                    wake(None)
                if retired:
                    return
                del wake
                try:
                    task = inbox.get(timeout=self.idle_timeout)
                except queue.Empty:
                    with self._lock:  # leave the stack, unless a submitter took this worker just now
                        if inbox in self._idle:
                            self._idle.remove(inbox)
                            return
                    task = inbox.get()  # taken as the wait ran out: its task (or _STOP) is on the way
        finally:
            with self._lock:  # the thread set
                self._threads.discard(me)

    def stop_idle(self) -> None:
        """End idle workers now; busy ones end when their current run does."""
        with self._lock:  # a new generation, and the idle stack emptied, in one step
            self._generation += 1
            idle, self._idle = self._idle, []
        for inbox in idle:
            inbox.put(_STOP)

    def reinit_after_fork(self) -> None:
        """In a forked child: the parent's workers do not exist here."""
        self._lock = threading.Lock()
        self._idle = []
        self._threads = set()
        self._generation += 1


class Timer:
    """One daemon thread firing callbacks at monotonic deadlines, for `go()` timeouts.

    Callbacks run on the timer thread and must be quick and not raise: the drivers' only hand work to the pool.
    The thread starts with the first deadline and ends when no deadline is pending for ``linger`` seconds (or at
    once after `stop_idle`).
    """

    def __init__(self, linger: float = 5.0) -> None:
        self.linger = linger
        # Guards the heap and the thread handle; the condition wakes the thread for an earlier deadline or a stop.
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[list[object]] = []
        self._live = 0
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<Timer pending={self._live} running={self._thread is not None}>"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def schedule(self, delay: float, callback: Callable[[], object]) -> list[object]:
        """Call ``callback`` after ``delay`` seconds; returns a handle for `cancel`."""
        entry: list[object] = [time.monotonic() + delay, next(self._seq), callback]
        with self._cond:  # heap and thread handle
            heapq.heappush(self._heap, entry)
            self._live += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="breaker-timer", daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:
                self._cond.notify()
        return entry

    def cancel(self, entry: list[object]) -> None:
        """Forget a scheduled callback (its call finished first)."""
        with self._cond:  # the live count and the entry's callback slot
            if entry[2] is not None:
                entry[2] = None
                self._live -= 1
                if not self._live:
                    self._heap.clear()
                    self._cond.notify()

    def stop_idle(self) -> None:
        """Let the thread end now if nothing is pending."""
        with self._cond:  # wake the thread to look again
            self._cond.notify()
            self._stopping = True

    def _run(self) -> None:
        cond = self._cond
        heap = self._heap
        with cond:  # released while waiting and while calling back
            while True:
                while heap and heap[0][2] is None:
                    heapq.heappop(heap)
                if not heap:
                    if self._stopping or (not cond.wait(self.linger) and not heap):
                        self._stopping = False
                        self._thread = None
                        return
                    continue
                delay = heap[0][0] - time.monotonic()  # type: ignore[operator]
                if delay > 0:
                    cond.wait(delay)
                    continue
                entry = heapq.heappop(heap)
                callback, entry[2] = entry[2], None  # fired: a later cancel() of it must not count it again
                if callback is None:
                    continue
                self._live -= 1
                cond.release()
                try:
                    callback()  # type: ignore[operator]
                finally:
                    cond.acquire()

    def reinit_after_fork(self) -> None:
        """In a forked child: the parent's timer thread does not exist here."""
        self._cond = threading.Condition(threading.Lock())
        self._heap = []
        self._live = 0
        self._thread = None
        self._stopping = False
