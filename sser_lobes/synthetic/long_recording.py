"""Long test recordings with a reference timeline, from any labelled corpus.

    python -m sser_lobes.synthetic.long_recording --csv corpus.csv \\
        --out long.wav [--minutes 10] [--silence 0.3,2.0] [--noise-snr 20]

Utterances of a corpus file (the Custom recipe's format, read by
:func:`sser_lobes.dataio.corpus_csv.read_corpus`: ``wav``, ``emotion``,
optional ``start`` / ``end``) are drawn at random and laid end to end with
silences of random length between them, optionally over steady background
noise, until the recording lasts ``minutes``. The audio is written block by
block (16 kHz mono PCM16 by default); the reference goes next to it
(``long.ref.jsonl``: one line per utterance, ``start``, ``end``,
``label``), ready for::

    sser-predict --model MODEL --timeline long.wav --output long.pred.jsonl
    python -m sser_lobes.evaluation.timeline_eval long.ref.jsonl long.pred.jsonl

Existing files are never overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile

from sser_lobes.dataio.audio import load_audio_segment
from sser_lobes.dataio.corpus_csv import parse_label_map, read_corpus
from sser_lobes.dataio.segments import Segment
from sser_lobes.dataio.timeline_files import write_segments
from sser_lobes.errors import AudioError, CorpusError

__all__ = ["make_long_recording", "main"]


def _noise_level(rows, sample_rate, rng, snr_db, sample=20):
    """Noise RMS ``snr_db`` below the mean RMS of a sample of utterances."""
    levels = []
    for index in rng.permutation(len(rows))[:sample]:
        row = rows[index]
        try:
            wav = load_audio_segment(row.wav, row.start, row.end, sample_rate, 0)
        except AudioError:
            continue
        levels.append(float(np.sqrt(np.mean(np.square(wav.numpy(), dtype=np.float64)))))
    if not levels:
        return 0.0
    return float(np.mean(levels)) / 10 ** (snr_db / 20)


class _Noise:
    """Steady pink-ish noise (white noise through a one-pole low-pass)."""

    def __init__(self, level, rng):
        self.level, self.rng, self.state = level, rng, 0.0

    def __call__(self, count):
        if not self.level or not count:
            return np.zeros(count)
        from scipy.signal import lfilter

        white = self.rng.standard_normal(count)
        out, state = lfilter([0.3], [1.0, -0.7], white, zi=[self.state])
        self.state = state[0]
        return out * self.level / 0.42  # unit RMS after the filter, times level


def make_long_recording(
    corpus,
    out,
    minutes=10.0,
    silence=(0.3, 2.0),
    noise_snr_db=None,
    seed=0,
    sample_rate=16000,
    label_map=None,
    reference=None,
):
    """Write a long recording and its reference timeline.

    Arguments
    ---------
    corpus : str or Path
        A corpus file (CSV / TSV / JSON lines) with ``wav`` and ``emotion``.
    out : str or Path
        The recording (``.wav`` or ``.flac``); must not exist.
    minutes : float
        Length of the recording (it stops after the utterance that reaches
        it).
    silence : (float, float)
        Range of the silences between utterances, seconds (uniform).
    noise_snr_db : float or None
        Background noise this many dB below the utterances' mean level
        (None: digital silence between utterances).
    seed : int
        Same arguments, same recording.
    sample_rate : int
        Rate of the recording.
    label_map : dict or str or None
        Classes renamed (``"calm:neu"``), as the corpus readers do.
    reference : str or Path or None
        The reference (default ``<out stem>.ref.jsonl`` next to ``out``):
        ``.jsonl``, ``.csv``, ``.rttm`` or Audacity ``.txt``.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The recording and the reference.

    Raises
    ------
    CorpusError
        The corpus cannot be used; an output exists; bad options.

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes.synthetic.csv_corpus import make_csv_corpus
    >>> root = Path(tempfile.mkdtemp())
    >>> csv_path = make_csv_corpus(root / "corpus", speakers=2, per_class=1)
    >>> wav, ref = make_long_recording(csv_path, root / "long.wav", minutes=0.25)
    >>> soundfile.info(str(wav)).duration >= 15, ref.name
    (True, 'long.ref.jsonl')
    """
    out = Path(out)
    reference = Path(reference) if reference else out.with_name(out.stem + ".ref.jsonl")
    for path in (out, reference):
        if path.exists():
            raise CorpusError(
                f"{path}: exists; choose another output (never overwritten)"
            )
    low, high = (float(x) for x in silence)
    if not 0 <= low <= high:
        raise CorpusError(f"--silence {low},{high}: need 0 <= min <= max seconds")
    if not minutes > 0:
        raise CorpusError(f"--minutes must be positive, got {minutes}")
    if isinstance(label_map, str) or label_map is None:
        label_map = parse_label_map(label_map, option="--label-map")
    rows, _ = read_corpus(corpus, label_map=label_map, require=("wav", "emotion"))
    rng = np.random.default_rng(seed)
    noise = _Noise(
        _noise_level(rows, sample_rate, rng, noise_snr_db)
        if noise_snr_db is not None
        else 0.0,
        rng,
    )
    target = int(round(minutes * 60 * sample_rate))
    written, segments, failures = 0, [], 0
    out.parent.mkdir(parents=True, exist_ok=True)
    subtype = "PCM_16"
    with soundfile.SoundFile(
        str(out), "w", samplerate=sample_rate, channels=1, subtype=subtype
    ) as handle:
        while written < target:
            gap = int(round(rng.uniform(low, high) * sample_rate))
            handle.write(np.clip(noise(gap), -1, 1).astype(np.float32))
            written += gap
            row = rows[rng.integers(len(rows))]
            try:
                wav = load_audio_segment(row.wav, row.start, row.end, sample_rate, 0)
            except AudioError:
                failures += 1
                if failures > 20 and not segments:
                    raise CorpusError(
                        f"{corpus}: the utterances cannot be read"
                    ) from None
                continue
            audio = wav.numpy().astype(np.float64) + noise(len(wav))
            handle.write(np.clip(audio, -1, 1 - 2**-15).astype(np.float32))
            segments.append(
                Segment(
                    written / sample_rate,
                    (written + len(wav)) / sample_rate,
                    row.emotion,
                )
            )
            written += len(wav)
        tail = int(round(rng.uniform(low, high) * sample_rate))
        handle.write(np.clip(noise(tail), -1, 1).astype(np.float32))
    fmt = {".csv": "csv", ".rttm": "rttm", ".txt": "audacity"}.get(
        reference.suffix.lower(), "jsonl"
    )
    labels = sorted({s.label for s in segments})
    write_segments(segments, reference, fmt, labels, file_id=out.stem)
    return out, reference


def _pair(text):
    low, _, high = str(text).partition(",")
    return float(low), float(high or low)


def main(argv=None):
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.synthetic.long_recording",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--csv", required=True, help="the corpus file")
    parser.add_argument("--out", required=True, help="the recording (.wav/.flac)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--silence", type=_pair, default=(0.3, 2.0), help="MIN,MAX seconds (0.3,2.0)"
    )
    parser.add_argument("--noise-snr", type=float, help="background noise, dB SNR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--label-map", help='classes renamed, e.g. "calm:neu"')
    parser.add_argument("--reference", help="default <out stem>.ref.jsonl")
    args = parser.parse_args(argv)
    try:
        wav, ref = make_long_recording(
            args.csv,
            args.out,
            args.minutes,
            args.silence,
            args.noise_snr,
            args.seed,
            args.sample_rate,
            args.label_map,
            args.reference,
        )
    except (CorpusError, ValueError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    info = soundfile.info(str(wav))
    print(f"wrote {wav} ({info.duration:.1f} s) and its reference {ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
