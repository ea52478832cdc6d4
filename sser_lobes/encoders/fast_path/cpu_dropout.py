"""Dropout masks drawn fast on CPU.

torch draws a CPU dropout mask with ``bernoulli_`` at about 6 ns per element
on this project's machine (2 threads), which makes dropout 13-17 % of a
WavLM training step: the attention dropout alone draws ``batch x heads x
time x time`` numbers per layer. :func:`drop_mask` draws the same
distribution (each element dropped independently with probability ``p``,
up to ``2**-32``) from numpy's SFC64 generator, in fixed streams of
:data:`STREAM_ELEMENTS` elements filled by up to ``torch.get_num_threads()``
threads, at about 0.7 ns per element.

The streams are seeded by one number drawn from torch's default CPU
generator, so ``torch.manual_seed`` makes a run reproducible and gradient
checkpointing, which restores torch's random state for the recompute, draws
the same masks again. The mask depends on the seed and the shape only, not on
the number of threads.

:class:`CPUDropout` is ``torch.nn.Dropout`` with this mask on CPU in training
(same module, no parameters; :class:`~sser_lobes.SSLEncoder` switches the
class of the model's dropouts). On other devices, in eval mode and in place it
is the stock module: CUDA's fused dropout is already fast.
"""

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

#: Elements per random stream: the unit of work of one thread.
STREAM_ELEMENTS = 1 << 20

_POOLS = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads):
    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(threads, "sser-dropout")
        return _POOLS[threads]


def drop_mask(shape, p):
    """A boolean mask of ``shape`` whose elements are ``True`` (dropped) with
    probability ``p``, independently.

    Arguments
    ---------
    shape : tuple of int
        Shape of the mask.
    p : float
        Drop probability, in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        Bool tensor on CPU.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> mask = drop_mask((1000, 1000), 0.1)
    >>> round(mask.float().mean().item(), 2)
    0.1
    >>> _ = torch.manual_seed(0)
    >>> bool((drop_mask((1000, 1000), 0.1) == mask).all())  # seeded by torch
    True
    """
    count = math.prod(shape)
    # One draw from torch's generator seeds every stream of this mask.
    seed = int(torch.randint(0, 2**62, ()))
    out = np.empty(count, dtype=bool)
    if p <= 0.0 or p >= 1.0:
        out.fill(p >= 1.0)
        return torch.from_numpy(out).view(shape)
    threshold = np.uint32(min(round(p * 2**32), 2**32 - 1))

    def fill(start):
        stop = min(start + STREAM_ELEMENTS, count)
        words = np.random.SFC64([seed, start // STREAM_ELEMENTS])
        raw = words.random_raw((stop - start + 1) // 2).view(np.uint32)
        np.less(raw[: stop - start], threshold, out=out[start:stop])

    starts = range(0, count, STREAM_ELEMENTS)
    threads = min(torch.get_num_threads(), len(starts))
    if threads > 1:
        list(_pool(threads).map(fill, starts))
    else:
        for start in starts:
            fill(start)
    return torch.from_numpy(out).view(shape)


def dropout(x, p):
    """Inverted dropout of ``x`` with a :func:`drop_mask` (training mode).

    Example
    -------
    >>> x = torch.ones(4, 1000, requires_grad=True)
    >>> y = dropout(x, 0.5)
    >>> sorted(set(y.unique().tolist()))
    [0.0, 2.0]
    >>> y.sum().backward()
    >>> bool((x.grad == y.detach()).all())  # the same mask and scale
    True
    """
    drop = drop_mask(tuple(x.shape), p)
    # In place on where's fresh output (its backward needs only the mask).
    return torch.where(drop, 0.0, x).mul_(1.0 / (1.0 - p))


class CPUDropout(nn.Dropout):
    """``torch.nn.Dropout`` whose CPU training mask is a :func:`drop_mask`.

    Example
    -------
    >>> drop = CPUDropout(0.1)
    >>> x = torch.ones(100, 100)
    >>> 0.85 < (drop(x) > 0).float().mean().item() < 0.95
    True
    >>> bool((drop.eval()(x) == x).all())
    True
    """

    def forward(self, input):
        """Dropout of ``input`` (the stock module off CPU, in eval mode or
        in place)."""
        if (
            not self.training
            or self.inplace
            or self.p <= 0.0
            or self.p >= 1.0
            or input.device.type != "cpu"
        ):
            return super().forward(input)
        return dropout(input, self.p)
