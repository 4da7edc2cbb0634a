"""A bounded background worker: publishing work that does not need the model runs off the
training thread, in submission order, and is never lost.

One daemon thread takes jobs from a FIFO queue, so whatever one job sends under a tag reaches the
sinks after what earlier jobs sent under it. Memory is bounded: past ``max_pending`` waiting jobs a
new job is submitted in its *light* form (its images dropped, its record kept) and the user is
warned once; past ``max_pending + max_records`` the training thread waits for the worker, so records
are never dropped. :meth:`flush` waits for everything submitted (the adapters call it at fit end, on
an exception and at teardown, and an ``atexit`` hook calls it before the interpreter exits).
"""
from __future__ import annotations

import atexit
import queue
import threading
import time
import traceback
import weakref
from typing import Callable, Optional

from lightning_saliency.monitor.notices import warn

Job = Callable[[], None]


class BackgroundWorker:
    """Runs jobs on one background thread, in order. A failing job is reported as a warning
    (:func:`~lightning_saliency.monitor.notices.warn`, with its traceback the first time) and the
    worker goes on.

    Args:
        max_pending: waiting jobs before new ones lose their images.
        max_records: further waiting jobs (light ones) before the training thread waits.
    """

    def __init__(self, max_pending: int = 4, max_records: int = 64) -> None:
        if max_pending < 1 or max_records < 1:
            raise ValueError("max_pending and max_records must be at least 1.")
        self.max_pending, self.max_records = max_pending, max_records
        self._jobs: queue.Queue = queue.Queue()
        self._pending = 0
        self._state = threading.Condition()
        self._warned_drop = False
        self._reported: set[str] = set()
        self.busy_seconds = 0.0  # the worker's total time on jobs
        self._thread = threading.Thread(target=self._loop, name="lightning-saliency-publisher", daemon=True)
        self._thread.start()
        reference = weakref.ref(self)
        atexit.register(lambda: (lambda w: w.flush() if w is not None else None)(reference()))

    @property
    def pending(self) -> int:
        with self._state:
            return self._pending

    def submit(self, job: Job, light: Optional[Job] = None) -> bool:
        """Queue ``job``; when the queue is long, queue ``light`` instead (warned once). Returns
        whether the full job was queued."""
        with self._state:
            full = self._pending < self.max_pending or light is None
            while self._pending >= self.max_pending + self.max_records:
                self._state.wait()  # bounded memory: the training thread waits, no record is dropped
            self._pending += 1
        if not full and not self._warned_drop:
            self._warned_drop = True
            warn(f"SaliencyMonitor: publishing falls behind training ({self.max_pending} runs waiting, e.g. a "
                      "slow disk or logger): the images of waiting runs are dropped to bound memory; every record "
                      "is still written. Fewer examples (num_examples) or log_example_images=False draw less.")
        self._jobs.put(job if full else light)
        return full

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every submitted job has run. Returns False if ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._state:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._state.wait(left)
        return True

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            started = time.perf_counter()
            try:
                job()
            except Exception as error:  # a sink or the disk failed: report it, keep the worker alive
                cause = f"{type(error).__name__}: {error}"
                message = f"SaliencyMonitor: background publishing failed: {cause}"
                if cause not in self._reported:
                    self._reported.add(cause)
                    message += "\n" + "".join(traceback.format_exception(type(error), error, error.__traceback__,
                                                                         limit=-3))
                warn(message)
            finally:
                self.busy_seconds += time.perf_counter() - started
                with self._state:
                    self._pending -= 1
                    self._state.notify_all()
