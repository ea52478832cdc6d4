"""Shared pieces of the synthetic corpus generators.

The voices of :mod:`sser_lobes.synthetic.iemocap` and
:mod:`sser_lobes.synthetic.msp_podcast` are built from the same parts: a
harmonic source on a pitch track, a syllable-rate amplitude envelope, and a
common finish (fades, level, a little dither). Each generator chooses its own
pitch, rate and level per class; the random draws happen in the order the
functions are called, so a seed gives the same audio.
"""

import numpy as np

#: Harmonics stay below this frequency (Hz).
HARMONIC_CEILING = 7000

#: Header of a macOS AppleDouble (``._*``) resource-fork file.
APPLEDOUBLE_MAGIC = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "


def appledouble_bytes(rng, size=120):
    """Bytes of a macOS AppleDouble (``._*``) file, which corpora copied from a
    Mac carry next to every file and which a preparation must skip.

    Example
    -------
    >>> data = appledouble_bytes(np.random.default_rng(0), 4)
    >>> data.startswith(APPLEDOUBLE_MAGIC), len(data) - len(APPLEDOUBLE_MAGIC)
    (True, 4)
    """
    return APPLEDOUBLE_MAGIC + rng.bytes(size)


def harmonic_source(phase, highest_f0, n_harmonics, tilt, rng, fast=False):
    """Harmonic signal on a phase track, peak-normalised to 1.

    Arguments
    ---------
    phase : numpy.ndarray
        Instantaneous phase of the fundamental (radians), one per sample.
    highest_f0 : float
        Highest pitch reached (Hz): harmonics are capped below
        :data:`HARMONIC_CEILING` for it.
    n_harmonics : int
        Number of harmonics wanted.
    tilt : float
        Harmonic ``k`` has amplitude ``k ** -tilt``.
    rng : numpy.random.Generator
        Draws the harmonics' phase offsets.
    fast : bool
        Compute the sines in float32 on the phase reduced modulo 2 pi (exact
        for integer harmonics): about 20 times faster, for corpora of
        thousands of files; the same random draws.

    Returns
    -------
    numpy.ndarray
        The voiced signal (float64).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> phase = 2 * np.pi * 100 * np.arange(1600) / 16000
    >>> voiced = harmonic_source(phase, 105.0, 5, 1.0, rng)
    >>> voiced.shape, round(float(np.abs(voiced).max()), 6)
    ((1600,), 1.0)
    """
    n_harm = max(1, min(n_harmonics, int(HARMONIC_CEILING // highest_f0)))
    if fast:
        k = np.arange(1, n_harm + 1, dtype=np.float32)
        offsets = rng.uniform(0, 2 * np.pi, size=n_harm).astype(np.float32)
        reduced = np.mod(phase, 2 * np.pi).astype(np.float32)
        voiced = (k**-tilt) @ np.sin(np.outer(k, reduced) + offsets[:, None])
        voiced = voiced.astype(np.float64)
    else:
        k = np.arange(1, n_harm + 1)
        offsets = rng.uniform(0, 2 * np.pi, size=n_harm)
        voiced = k ** (-tilt) @ np.sin(np.outer(k, phase) + offsets[:, None])
    voiced /= np.abs(voiced).max() + 1e-9
    return voiced


def syllable_envelope(t, rate, rng):
    """Raised-cosine amplitude modulation at ``rate`` Hz (random phase).

    Example
    -------
    >>> env = syllable_envelope(np.arange(160) / 16000, 4.0, np.random.default_rng(0))
    >>> bool(env.min() >= 0.15 and env.max() <= 1.0)
    True
    """
    envelope = 0.5 - 0.5 * np.cos(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    return 0.15 + 0.85 * envelope**1.5


def finish_utterance(signal, amplitude, rng, sample_rate):
    """Fade in and out (20 ms), set the peak to ``amplitude``, add dither and
    clip to the PCM16 range. ``signal`` (float64) is modified in place.

    Example
    -------
    >>> out = finish_utterance(np.ones(1600), 0.5, np.random.default_rng(0), 16000)
    >>> peak = float(np.abs(out).max())
    >>> bool(0.49 < peak < 0.51), bool(abs(out[0]) < 0.01)  # level, faded in
    (True, True)
    """
    num = signal.shape[0]
    fade = min(num // 2, int(0.02 * sample_rate))
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        signal[:fade] *= ramp
        signal[num - fade :] *= ramp[::-1]
    signal /= np.abs(signal).max() + 1e-9
    signal *= amplitude
    signal += 0.002 * rng.standard_normal(num)
    return np.clip(signal, -1.0, 1.0 - 2**-15)


def write_text(path, text):
    """Write UTF-8 text with ``\\n`` line ends on every platform."""
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def check_new_root(root, out_option="output folder"):
    """Refuse to write a corpus into ``root`` unless it is absent or an empty
    folder (a generator never touches files it did not write).

    Arguments
    ---------
    root : pathlib.Path
        The corpus folder about to be written.
    out_option : str
        What the user chooses the parent with, for the message.

    Raises
    ------
    FileExistsError
        If ``root`` is a file or a folder that is not empty.

    Example
    -------
    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> check_new_root(Path(tmp.name) / "corpus")  # absent: fine
    >>> _ = (Path(tmp.name) / "corpus").write_text("x")
    >>> check_new_root(Path(tmp.name) / "corpus")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: .../corpus: exists and is not a folder; not touching it
    >>> tmp.cleanup()
    """
    if not root.exists():
        return
    if not root.is_dir():
        raise FileExistsError(f"{root}: exists and is not a folder; not touching it")
    if any(root.iterdir()):
        raise FileExistsError(
            f"{root}: already exists and is not empty; refusing to write into "
            f"it (choose another {out_option} or remove it yourself)"
        )
