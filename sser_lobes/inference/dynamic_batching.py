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

With ``size_of`` (e.g. an audio's length), a busy worker looks further
than one batch: it takes up to ``lookahead`` waiting items and runs the
oldest with the ``max_batch_size - 1`` closest to it in size, so a padded
batch wastes less. The oldest item is in every batch it builds, so no item
waits behind more than ``lookahead`` others. ``max_queue`` bounds every
item not yet in a batch, taken ahead or not.

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
    size_of : callable, optional
        ``size_of(item) -> float``: batches group items of close sizes.
        ``None``: first come, first batched.
    lookahead : int, optional
        Items the worker may take ahead to choose from (default
        ``4 * max_batch_size``); used with ``size_of`` only.
    """

    def __init__(
        self,
        process,
        max_batch_size=8,
        max_wait_ms=10.0,
        max_queue=64,
        name="sser-batcher",
        size_of=None,
        lookahead=None,
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
        self.size_of = size_of
        self.lookahead = max(
            self.max_batch_size,
            int(lookahead) if lookahead is not None else 4 * self.max_batch_size,
        )
        # the bound is ``_waiting`` (queued or taken ahead, not yet batched)
        self._queue = queue.Queue()
        self._waiting = 0
        self._ahead = []  # (item, future) taken from the queue: worker only
        self._stopping = False  # worker only: the stop mark was taken
        self._closed = threading.Event()
        self._lock = threading.Lock()
        #: batch size -> number of batches run (for reports and tests)
        self.batch_sizes = {}
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    @property
    def waiting(self):
        """Items submitted and not yet in a batch."""
        with self._lock:
            return self._waiting

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
        with self._lock:
            if self._waiting >= self.max_queue:
                raise QueueFullError(
                    f"the request queue is full ({self.max_queue} waiting)"
                )
            self._waiting += 1
        self._queue.put_nowait((item, future))
        return future

    def close(self, timeout=30.0):
        """Stop taking items, finish the queued ones, end the worker."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(_STOP)
        self._worker.join(timeout)

    def _next(self, timeout=None):
        """The next queued entry (``None``: none in time, or the stop mark)."""
        try:
            if timeout is None:
                entry = self._queue.get()
            elif timeout > 0:
                entry = self._queue.get(timeout=timeout)
            else:
                entry = self._queue.get_nowait()
        except queue.Empty:
            return None
        if entry is _STOP:
            self._stopping = True
            return None
        return entry

    def _take_batch(self):
        """The next batch of ``(item, future)``, and whether to stop after it."""
        ahead = self._ahead
        if not ahead and not self._stopping:
            first = self._next()
            if first is not None:
                ahead.append(first)
        deadline = time.monotonic() + self.max_wait
        while ahead and len(ahead) < self.max_batch_size and not self._stopping:
            entry = self._next(deadline - time.monotonic())
            if entry is None:
                break
            ahead.append(entry)
        if self.size_of is not None:
            while len(ahead) < self.lookahead and not self._stopping:
                entry = self._next(0)
                if entry is None:
                    break
                ahead.append(entry)
        batch = self._choose()
        with self._lock:
            self._waiting -= len(batch)
        return batch, self._stopping and not self._ahead

    def _choose(self):
        """Remove the batch from the items taken: the oldest and, with
        ``size_of``, those closest to it in size (in arrival order)."""
        ahead, size = self._ahead, self.max_batch_size
        if self.size_of is None or len(ahead) <= size:
            chosen = list(range(min(size, len(ahead))))
        else:
            sizes = [float(self.size_of(item)) for item, _ in ahead]
            by_distance = sorted(
                range(1, len(ahead)), key=lambda i: (abs(sizes[i] - sizes[0]), i)
            )
            chosen = sorted([0, *by_distance[: size - 1]])
        picked = set(chosen)
        self._ahead = [entry for i, entry in enumerate(ahead) if i not in picked]
        return [ahead[i] for i in chosen]

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
