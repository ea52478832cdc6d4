"""Dynamic batching: requests from many threads, run together in batches.

A :class:`DynamicBatcher` owns one worker thread and a bounded queue.
:meth:`~DynamicBatcher.submit` puts an item in the queue and returns a
:class:`concurrent.futures.Future` at once (or raises
:class:`~sser_lobes.errors.QueueFullError` when the queue is full: memory
stays bounded). The worker takes the first waiting item, then more until it
has ``max_batch_size`` items or ``max_wait_ms`` have passed since the first
was taken, and calls ``process(items)`` once for the whole batch. Items
that arrived while the previous batch ran are taken at once, so under load
batches fill without waiting.

``process`` returns one result per item, in order; a result that is an
exception is set on that item's future only. If ``process`` itself raises,
each item of the batch is run alone, so one bad item never fails the others.
``max_batch_size=1`` turns batching off (the same queue and worker, one item
per call): the fair comparison for a benchmark.

Example
-------
>>> batcher = DynamicBatcher(lambda items: [2 * x for x in items], max_wait_ms=5)
>>> futures = [batcher.submit(x) for x in range(3)]
>>> [f.result(timeout=10) for f in futures]
[0, 2, 4]
>>> batcher.close()
"""

import queue
import threading
import time
from concurrent.futures import Future

from sser_lobes.errors import BatcherClosedError, QueueFullError

_STOP = object()


class DynamicBatcher:
    """Collects submitted items into batches for one worker thread.

    Arguments
    ---------
    process : callable
        ``process(items) -> results``: one result (or exception instance)
        per item, in order. Runs in the worker thread only.
    max_batch_size : int
        Largest batch (1: no batching).
    max_wait_ms : float
        How long the worker waits for more items after taking the first.
    max_queue : int
        Items that may wait; more are refused with ``QueueFullError``.
    name : str
        The worker thread's name.
    """

    def __init__(
        self,
        process,
        max_batch_size=8,
        max_wait_ms=10.0,
        max_queue=64,
        name="sser-batcher",
    ):
        if int(max_batch_size) < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if float(max_wait_ms) < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if int(max_queue) < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.process = process
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self._queue = queue.Queue(maxsize=self.max_queue)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        #: batch size -> number of batches run (for reports and tests)
        self.batch_sizes = {}
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    @property
    def waiting(self):
        """Items in the queue (not yet taken by the worker)."""
        return self._queue.qsize()

    def submit(self, item):
        """Queue ``item``; its future gets the result of its batch.

        Raises
        ------
        QueueFullError
            The queue holds ``max_queue`` items.
        BatcherClosedError
            :meth:`close` was called.
        """
        if self._closed.is_set():
            raise BatcherClosedError("the batcher has stopped")
        future = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            raise QueueFullError(
                f"the request queue is full ({self.max_queue} waiting)"
            ) from None
        return future

    def close(self, timeout=30.0):
        """Stop taking items, finish the queued ones, end the worker."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(_STOP)
        self._worker.join(timeout)

    def _take_batch(self):
        """The next batch of ``(item, future)``, and whether to stop after it."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch, stop = [first], False
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch_size:
            left = deadline - time.monotonic()
            try:
                entry = (
                    self._queue.get(timeout=left)
                    if left > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if entry is _STOP:
                stop = True
                break
            batch.append(entry)
        return batch, stop

    def _run(self):
        stop = False
        while not stop:
            batch, stop = self._take_batch()
            # a future cancelled while waiting (its client gave up) is skipped
            live = [(i, f) for i, f in batch if f.set_running_or_notify_cancel()]
            if live:
                with self._lock:
                    size = len(live)
                    self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1
                self._run_batch(live)

    def _run_batch(self, batch):
        items = [item for item, _ in batch]
        try:
            results = list(self.process(items))
            if len(results) != len(items):
                raise RuntimeError(
                    f"process returned {len(results)} results for {len(items)} items"
                )
        except Exception as error:  # noqa: BLE001 - retried item by item below
            if len(items) == 1:
                results = [error]
            else:
                results = [_call_alone(self.process, item) for item in items]
        for (_, future), result in zip(batch, results):
            future.batch_size = len(batch)  # for reports: who shared the batch
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def _call_alone(process, item):
    """``process([item])[0]``, or the exception it raised."""
    try:
        return list(process([item]))[0]
    except Exception as error:  # noqa: BLE001 - handed to the item's future
        return error
