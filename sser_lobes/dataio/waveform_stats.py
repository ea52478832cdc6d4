"""Mean and standard deviation of every audio sample of a training set.

The Odyssey 2024 MSP-Podcast baseline normalises every waveform with one mean
and one standard deviation computed over all samples of the training audio
(``utils/dataset/normalizer.py`` of msplabresearch/MSP-Podcast_Challenge:
``mean = sum(x) / n``, ``std = sqrt(sum(x^2) / n - mean^2)``), and reuses them
for every split. :func:`waveform_statistics` computes the same numbers in one
streaming pass (float64 sums, files read on threads, never all in memory);
the preparation stores them with the manifests and the recipe hands them to
:meth:`sser_lobes.SSLEncoder.set_waveform_stats`.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile
from tqdm import tqdm


def file_sums(path):
    """``(sum, sum of squares, samples)`` of one audio file, in float64.

    Samples are read as float32 in [-1, 1) (as librosa and the recipes read
    them); a multi-channel file is averaged to mono first.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/a.wav"
    >>> soundfile.write(path, np.array([0.5, -0.5, 0.25], dtype="float32"), 16000,
    ...                 subtype="FLOAT")
    >>> file_sums(path)
    (0.25, 0.5625, 3)
    """
    data, _ = soundfile.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float64)
    return float(mono.sum()), float(np.square(mono).sum()), int(mono.shape[0])


def combine_sums(sums):
    """Mean, standard deviation and counts from per-file sums.

    Arguments
    ---------
    sums : iterable of tuple
        ``(sum, sum of squares, samples)`` per file.

    Returns
    -------
    dict
        ``{"mean", "std", "samples", "files"}``.

    Example
    -------
    >>> combine_sums([(1.0, 1.0, 2), (-1.0, 1.0, 2)])
    {'mean': 0.0, 'std': 0.7071067811865476, 'samples': 4, 'files': 2}
    """
    total = squares = 0.0
    samples = files = 0
    for s, q, n in sums:
        total += s
        squares += q
        samples += n
        files += 1
    if samples == 0:
        raise ValueError("no audio sample to compute waveform statistics on")
    mean = total / samples
    var = max(squares / samples - mean * mean, 0.0)
    return {"mean": mean, "std": math.sqrt(var), "samples": samples, "files": files}


def waveform_statistics(paths, groups=None, num_workers=4, progress=True):
    """Waveform statistics over audio files, for one or several subsets.

    Arguments
    ---------
    paths : sequence of str
        Audio files; each is read once.
    groups : dict or None
        Name -> set of the paths that form that subset (e.g. the training
        utterances of each task); None: one group ``"all"`` of every path.
    num_workers : int
        Reading threads (0 or 1: none).
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        Group name -> :func:`combine_sums` of its files.

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> for name, value in (("a", 0.5), ("b", -0.5)):
    ...     soundfile.write(os.path.join(folder, name + ".wav"),
    ...                     np.full(4, value, dtype="float32"), 16000, subtype="FLOAT")
    >>> files = [os.path.join(folder, n + ".wav") for n in "ab"]
    >>> stats = waveform_statistics(files, {"a": {files[0]}, "both": set(files)},
    ...                             progress=False)
    >>> stats["a"]["mean"], stats["both"]["mean"], stats["both"]["std"]
    (0.5, 0.0, 0.5)
    """
    paths = list(dict.fromkeys(paths))
    if groups is None:
        groups = {"all": set(paths)}
    bar = tqdm(
        total=len(paths), desc="waveform statistics", disable=not progress, unit="file"
    )
    sums = {}

    def read(path):
        result = file_sums(path)
        bar.update(1)
        return path, result

    try:
        if num_workers and num_workers > 1:
            with ThreadPoolExecutor(max_workers=num_workers) as pool:
                sums = dict(pool.map(read, paths))
        else:
            sums = dict(map(read, paths))
    finally:
        bar.close()
    return {
        name: combine_sums(sums[p] for p in paths if p in members)
        for name, members in groups.items()
    }
