"""A block's work on several threads: the rehearsal's helpers (``anamnesis rehearse
--threads N``).

Within one block of the rehearsal's lockstep (:mod:`anamnesis.hub.clock.rehearse`)
the agents are independent of one another (each reads its own input column and
writes its own output column), and the room's tail levels compute only output due
from the next block on (:meth:`~anamnesis.hub.engine.partitions.RoomConvolver.process_tails`).
Their kernels are numba ``nogil`` ones and numpy FFTs, which release the GIL, so
these pieces can run side by side on several cores.

A :class:`Crew` of ``threads`` has ``threads - 1`` helper threads; the caller is the
last member. Per block:

* :meth:`Crew.begin` hands the first helper a *side* job (the room's tails and the
  listener's preview) to run while the caller goes on (the mics, the graph);
* :meth:`Crew.share` gives every member, the caller too, jobs from one list (the
  voices), each taken by whichever member is free first, and returns when every
  job and the side job have ended.

The arithmetic of every job is the same whichever thread runs it and in whatever
order, so the result is bit-identical for any number of threads (tested by sha256
of the rehearsal's files). The first exception a job raises is raised again by
:meth:`Crew.share` (or :meth:`Crew.join`) in the caller, after every member has
stopped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

#: The most threads a crew takes (a block has at most a few dozen voices).
MAX_THREADS = 64

_STOP = object()


class Crew:
    """``threads - 1`` helper threads (``threads`` 1 … :data:`MAX_THREADS`; 1: no
    helper, every job runs in the caller). Use as a context manager, or call
    :meth:`close`."""

    def __init__(self, threads: int) -> None:
        self.threads = self.check_threads(threads)
        self._jobs: Sequence[Callable[[], None]] = ()
        self._next = 0
        self._claim_lock = threading.Lock()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._inboxes: list[queue.SimpleQueue] = []
        self._helpers: list[threading.Thread] = []
        self._pending = 0                # messages posted and not yet answered
        self._take = self._take_jobs     # bound once: a put per block allocates nothing
        for i in range(threads - 1):
            inbox: queue.SimpleQueue = queue.SimpleQueue()
            helper = threading.Thread(target=self._serve, args=(inbox,),
                                      name=f"rehearsal-crew-{i + 1}", daemon=True)
            self._inboxes.append(inbox)
            self._helpers.append(helper)
            helper.start()

    @staticmethod
    def check_threads(threads: object) -> int:
        """``threads`` if it is a whole number 1 … :data:`MAX_THREADS`, else ValueError."""
        if isinstance(threads, bool) or not isinstance(threads, int) or not (
                1 <= threads <= MAX_THREADS):
            raise ValueError(f"threads must be a whole number 1..{MAX_THREADS}; got {threads!r}")
        return threads

    def __enter__(self) -> Crew:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- per block ------------------------------------------------------------

    def begin(self, side: Callable[[], None]) -> None:
        """Start ``side()`` on the first helper (on the caller, now, with no helper);
        it ends by the next :meth:`share` or :meth:`join`."""
        if not self._inboxes:
            side()
            return
        self._inboxes[0].put(side)
        self._pending += 1

    def share(self, jobs: Sequence[Callable[[], None]]) -> None:
        """Run every job of ``jobs`` once, spread over the crew and the caller; return
        when they and the side job have ended (re-raising the first error)."""
        self._jobs = jobs
        self._next = 0
        for inbox in self._inboxes:
            inbox.put(self._take)
        self._pending += len(self._inboxes)
        failure: BaseException | None = None
        try:
            self._take_jobs()
        except BaseException as exc:  # the helpers stop at once too: no job is left to take
            failure = exc
            self._stop_taking()
        self.join(failure)

    def join(self, failure: BaseException | None = None) -> None:
        """Wait until every posted job has ended; raise ``failure`` or the first helper's
        error."""
        while self._pending:
            error = self._done.get()
            self._pending -= 1
            if error is not None and failure is None:
                failure = error
                self._stop_taking()
        self._jobs = ()
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Wait for the posted jobs (their errors are dropped), then stop the helpers;
        the crew then runs every job in the caller."""
        try:
            self.join()
        except BaseException:  # closing after a failed block: the error was raised then
            pass
        for inbox in self._inboxes:
            inbox.put(_STOP)
        for helper in self._helpers:
            helper.join()
        self._inboxes, self._helpers = [], []

    # -- helpers ----------------------------------------------------------------

    def _stop_taking(self) -> None:
        with self._claim_lock:
            self._next = len(self._jobs)

    def _take_jobs(self) -> None:
        jobs = self._jobs
        while True:
            with self._claim_lock:
                i = self._next
                self._next = i + 1
            if i >= len(jobs):
                return
            jobs[i]()

    def _serve(self, inbox: queue.SimpleQueue) -> None:
        while True:
            work = inbox.get()
            if work is _STOP:
                return
            try:
                work()
            except BaseException as exc:  # handed to the caller, raised in its thread
                self._done.put(exc)
            else:
                self._done.put(None)


__all__ = ["MAX_THREADS", "Crew"]
