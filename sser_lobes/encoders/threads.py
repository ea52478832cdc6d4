"""How many CPU threads torch runs with (``--num_threads`` / ``--num-threads``).

The recipes' set-up and ``sser-predict`` call :func:`set_num_threads`, so
both take the same option and the same default: the number torch picks (one
per core, or ``OMP_NUM_THREADS``), but never more than the CPUs this process
may run on (``os.sched_getaffinity``: a container or ``taskset`` may give it
fewer than the machine has).

Fewer threads than cores can be faster. When another job shares the cores,
the threads of one torch operation wait for each other at every barrier
while the other job holds a core: on this project's 2-core machine the demo
(``recipes/IEMOCAP/run_demo.py``) ran several times slower with 2 threads
than with 1 next to another job (README, "Threads").

Example
-------
>>> set_num_threads(1)
1
>>> set_num_threads(0)
Traceback (most recent call last):
...
ValueError: --num_threads must be an integer >= 1 (or null: the default); got 0
"""

import logging
import os

import torch

logger = logging.getLogger(__name__)


def usable_cpus():
    """The number of CPUs this process may run on.

    Example
    -------
    >>> usable_cpus() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_num_threads():
    """What torch picks, capped at :func:`usable_cpus`."""
    return max(1, min(torch.get_num_threads(), usable_cpus()))


def set_num_threads(num_threads=None, option="--num_threads"):
    """Set torch's intra-op threads and return how many it uses.

    Arguments
    ---------
    num_threads : int or None
        None: :func:`default_num_threads`. More than :func:`usable_cpus` is
        allowed (with a warning: the threads then share cores).
    option : str
        The option's name, for the error message.

    Raises
    ------
    ValueError
        ``num_threads`` is not a positive integer.
    """
    if num_threads is None:
        num_threads = default_num_threads()
    elif (
        isinstance(num_threads, bool)
        or not isinstance(num_threads, int)
        or (num_threads < 1)
    ):
        raise ValueError(
            f"{option} must be an integer >= 1 (or null: the default); got "
            f"{num_threads!r}"
        )
    cpus = usable_cpus()
    if num_threads > cpus:
        logger.warning(
            "%s=%d: this process may use %d CPU(s); the extra threads share them",
            option,
            num_threads,
            cpus,
        )
    torch.set_num_threads(num_threads)
    return num_threads
