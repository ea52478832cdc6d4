"""A voice that a speech detector takes for speech: source-filter synthesis.

The harmonic voices of :mod:`sser_lobes.synthetic.iemocap` carry the class
cues a model can learn, but a voice activity detector trained on real
speech (silero) does not take them for speech: they have no formants.
:func:`formant_voice` adds what it listens for: a glottal pulse train
(Rosenberg pulses with jitter) through four resonators whose formants glide
between vowel targets every syllable, syllable-rate amplitude and short
noise bursts for consonants. The class cues (pitch, level, syllable rate,
breathiness, brightness) are those of
:data:`sser_lobes.synthetic.iemocap.CLASS_CUES`.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from sser_lobes.synthetic.common import finish_utterance
from sser_lobes.synthetic.iemocap import CLASS_CUES

__all__ = ["formant_voice"]

#: First three formants (Hz) of a few vowels (a, i, u, e, o, ae, schwa-like).
VOWELS = np.array(
    [
        (730, 1090, 2440),
        (270, 2290, 3010),
        (300, 870, 2240),
        (530, 1840, 2480),
        (570, 840, 2410),
        (660, 1720, 2410),
        (440, 1020, 2240),
    ],
    dtype=float,
)
_BANDWIDTHS = (90.0, 110.0, 140.0, 200.0)
_FOURTH_FORMANT = 3500.0
_STEP = 80  # samples per formant update at 16 kHz (5 ms)


def formant_voice(emotion, duration, sample_rate, rng, f0_factor=1.0):
    """One speech-like utterance of class ``emotion``, float64 in [-1, 1].

    Arguments
    ---------
    emotion : str
        A key of ``CLASS_CUES`` (neu, hap, exc, sad, ang, ...).
    duration : float
        Seconds.
    sample_rate : int
        Hz.
    rng : numpy.random.Generator
    f0_factor : float
        Speaker's pitch factor.

    Example
    -------
    >>> wav = formant_voice("neu", 0.5, 16000, np.random.default_rng(0))
    >>> wav.shape, bool(np.abs(wav).max() <= 1)
    ((8000,), True)
    """
    cue = CLASS_CUES[emotion]
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    syllable = 1.0 / max(cue.am_rate, 3.0)  # vowel changes: at least 3 a second
    targets = int(duration / syllable) + 2
    knots = np.arange(targets) * syllable * sample_rate
    chosen = VOWELS[rng.integers(0, len(VOWELS), targets)]
    tracks = [np.interp(np.arange(n), knots, chosen[:, k]) for k in range(3)]
    f0 = cue.f0 * f0_factor * (1 + rng.normal(0, 0.03))
    contour = 1 + 0.12 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    pitch = f0 * contour * (1 + 0.01 * rng.standard_normal(n))
    phase = np.mod(np.cumsum(pitch) / sample_rate, 1.0)
    opening, closing = 0.4, 0.16
    pulse = np.where(
        phase < opening,
        0.5 * (1 - np.cos(np.pi * phase / opening)),
        np.where(
            phase < opening + closing,
            np.cos(np.pi * (phase - opening) / (2 * closing)),
            0.0,
        ),
    )
    source = np.diff(pulse, prepend=0.0)
    step = max(1, int(round(_STEP * sample_rate / 16000)))
    out = np.zeros(n)
    states = [np.zeros(2) for _ in _BANDWIDTHS]
    brightness = float(np.clip(0.9 / max(cue.tilt, 0.3), 0.5, 0.9))
    for first in range(0, n, step):
        piece = source[first : first + step]
        total = 0.0
        for k, bandwidth in enumerate(_BANDWIDTHS):
            centre = tracks[k][first] if k < 3 else _FOURTH_FORMANT
            radius = np.exp(-np.pi * bandwidth / sample_rate)
            theta = 2 * np.pi * min(centre, 0.45 * sample_rate) / sample_rate
            denominator = [1.0, -2 * radius * np.cos(theta), radius * radius]
            filtered, states[k] = lfilter(
                [1 - radius], denominator, piece, zi=states[k]
            )
            total = total + filtered * brightness**k
        out[first : first + step] = total
    out /= np.std(out) + 1e-12
    rate = max(cue.am_rate, 2.5) * rng.uniform(0.9, 1.1)
    offset = rng.uniform(0, 2 * np.pi)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rate * t + offset)
    bursts = np.clip(-np.sin(2 * np.pi * rate * t + offset), 0, 1) ** 4
    noise = rng.standard_normal(n) * (0.15 + cue.noise) * bursts
    signal = out * envelope + 1.5 * noise
    return finish_utterance(
        signal, cue.amplitude * rng.uniform(0.85, 1.15), rng, sample_rate
    )
