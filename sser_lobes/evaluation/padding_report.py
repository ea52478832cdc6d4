"""How much of the computed audio is padding: random batches vs. bucketed batches.

Command line::

    sser-padding-report [MANIFEST.json ...] [--iemocap-profile]
        [--batch-size 4] [--baseline-batch-size 4] [--epochs 3] [--seed 1993]
        [--jitter 0.05] [--max-duration SECONDS] [--duration-key duration]
        [--json out.json]

For each SpeechBrain JSON manifest (a dict keyed by utterance id whose entries
carry a duration in seconds) and/or the synthetic IEMOCAP profile
(:func:`sser_lobes.dataio.batching.iemocap_like_durations`), it prints the duration
statistics and the share of the computed samples that is padding for

* the peer, SpeechBrain's default shuffled loader (the SpeechBrain IEMOCAP
  recipe: random batches of 4), exactly as ``ReproducibleRandomSampler``
  seeded ``seed + epoch`` draws them, averaged over the epochs; and
* :class:`sser_lobes.dataio.batching.DurationBucketBatchSampler` at ``--batch-size``,
  averaged over the same epochs;

and their ratio. Epochs are numbered from 1 as in SpeechBrain.

With ``--max-duration`` (training that crops long utterances, e.g. to 12 s)
the durations are capped at that value for *both* batchings, so the random
baseline is cropped too and the comparison stays fair.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from sser_lobes.dataio.batching import (
    DEFAULT_JITTER,
    DurationBucketBatchSampler,
    _as_durations,
    _check_int,
    _check_max_duration,
    batches_padding_share,
    iemocap_like_durations,
    random_batches,
)
from sser_lobes.errors import ManifestError

__all__ = [
    "ManifestError",
    "baseline_name",
    "format_report",
    "load_manifest_durations",
    "main",
    "padding_report",
]

IEMOCAP_PROFILE = "synthetic IEMOCAP profile"


def baseline_name(batch_size):
    """Name of the peer batching at ``batch_size``.

    Arguments
    ---------
    batch_size : int
        Baseline batch size.

    Returns
    -------
    str

    Example
    -------
    >>> baseline_name(4)
    'SpeechBrain IEMOCAP recipe: random batches of 4'
    """
    if batch_size == 4:
        return "SpeechBrain IEMOCAP recipe: random batches of 4"
    return f"SpeechBrain default loader (shuffle=True): random batches of {batch_size}"


def padding_report(
    durations,
    batch_size=8,
    baseline_batch_size=4,
    epochs=3,
    seed=1993,
    jitter=DEFAULT_JITTER,
    max_duration=None,
):
    """Padding of random (SpeechBrain) batches vs. duration-bucketed batches.

    Arguments
    ---------
    durations : sequence of float
        Utterance durations in seconds.
    batch_size : int
        Batch size of the bucketed batches.
    baseline_batch_size : int
        Batch size of the random batches (SpeechBrain's IEMOCAP recipe: 4).
    epochs : int
        Epochs ``1..epochs`` to average over (random batches of epoch ``e``
        are drawn with seed ``seed + e``, as ``ReproducibleRandomSampler``).
    seed : int
        Seed of both batchings.
    jitter : float
        Jitter of the bucketed sampler.
    max_duration : float, optional
        Crop: durations are capped at this value (seconds) for both the
        random baseline and the bucketed batches. ``None``: no crop.

    Returns
    -------
    dict
        Duration statistics of the input, before any crop (``n_utterances``,
        ``duration_mean_s``, ``duration_sd_s`` (population sd),
        ``duration_min_s``, ``duration_max_s``, ``total_hours``); the crop
        (``max_duration_s``, ``None`` without crop; ``n_cropped``, utterances
        longer than it; ``cropped_total_hours``, audio left after cropping);
        for the baseline and the bucketed
        batches: ``*_padding_share`` (mean over epochs),
        ``*_padding_share_per_epoch``, ``*_computed_hours`` (audio hours
        computed per epoch, padding included); ``padding_ratio`` (baseline /
        bucketed share, ``None`` if the bucketed share is 0);
        ``bucketed_batches_repeated`` (mean share of an epoch's batches that
        reappear with the same members in the next epoch, ``None`` for one
        epoch); and the settings.

    Example
    -------
    >>> r = padding_report([1.0, 1.1, 5.0, 5.2, 9.0, 9.1, 3.0, 3.3], 2, 4, 2, 0)
    >>> r["n_utterances"], r["bucketed_padding_share"] < r["baseline_padding_share"]
    (8, True)
    >>> padding_report([1.0, 1.1, 5.0, 9.0], 2, 2, 1, 0, max_duration=4.0)["n_cropped"]
    2
    """
    raw = _as_durations(durations)
    max_duration = _check_max_duration(max_duration)
    d = raw if max_duration is None else np.minimum(raw, max_duration)
    batch_size = _check_int(batch_size, "batch_size", 1)
    baseline_batch_size = _check_int(baseline_batch_size, "baseline_batch_size", 1)
    epochs = _check_int(epochs, "epochs", 1)
    seed = _check_int(seed, "seed", 0)
    sampler = DurationBucketBatchSampler(
        raw, batch_size, seed=seed, jitter=jitter, max_duration=max_duration
    )

    def computed_hours(batches):
        return sum(len(b) * float(d[b].max()) for b in batches) / 3600.0

    base_share, base_hours, ours_share, ours_hours, repeated = [], [], [], [], []
    previous = None
    for epoch in range(1, epochs + 1):
        base = random_batches(len(d), baseline_batch_size, seed + epoch)
        base_share.append(batches_padding_share(d, base))
        base_hours.append(computed_hours(base))
        ours = sampler.epoch_batches(epoch)
        ours_share.append(batches_padding_share(d, ours))
        ours_hours.append(computed_hours(ours))
        members = {frozenset(b) for b in ours}
        if previous is not None:
            repeated.append(len(members & previous) / len(members))
        previous = members

    base_mean = float(np.mean(base_share))
    ours_mean = float(np.mean(ours_share))
    return {
        "n_utterances": int(len(raw)),
        "duration_mean_s": float(raw.mean()),
        "duration_sd_s": float(raw.std()),
        "duration_min_s": float(raw.min()),
        "duration_max_s": float(raw.max()),
        "total_hours": float(raw.sum() / 3600.0),
        "max_duration_s": max_duration,
        "n_cropped": int((raw > d).sum()),
        "cropped_total_hours": float(d.sum() / 3600.0),
        "baseline_name": baseline_name(baseline_batch_size),
        "baseline_batch_size": baseline_batch_size,
        "baseline_padding_share": base_mean,
        "baseline_padding_share_per_epoch": base_share,
        "baseline_computed_hours": float(np.mean(base_hours)),
        "bucketed_name": "sser DurationBucketBatchSampler",
        "bucketed_batch_size": batch_size,
        "bucketed_jitter": sampler.jitter,
        "bucketed_padding_share": ours_mean,
        "bucketed_padding_share_per_epoch": ours_share,
        "bucketed_computed_hours": float(np.mean(ours_hours)),
        "bucketed_batches_repeated": float(np.mean(repeated)) if repeated else None,
        "padding_ratio": base_mean / ours_mean if ours_mean > 0 else None,
        "epochs": epochs,
        "seed": seed,
    }


def load_manifest_durations(path, duration_key="duration"):
    """Read utterance ids and durations from a SpeechBrain JSON manifest.

    Arguments
    ---------
    path : str or Path
        JSON file: ``{"utt_id": {"duration": 3.2, ...}, ...}``.
    duration_key : str
        Field holding the duration in seconds (SpeechBrain's own IEMOCAP
        preparation writes ``"length"``).

    Returns
    -------
    ids : list of str
    durations : numpy.ndarray

    Raises
    ------
    ManifestError
        Naming the file (and the utterance and key) when the file is missing,
        not JSON, not an object of objects, empty, or an entry lacks a finite,
        non-negative numeric duration.

    Example
    -------
    >>> import json, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "train.json")
    >>> with open(path, "w") as f:
    ...     json.dump({"u1": {"duration": 1.5}, "u2": {"duration": 2}}, f)
    >>> load_manifest_durations(path)
    (['u1', 'u2'], array([1.5, 2. ]))
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: cannot read manifest ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ManifestError(
            f"{path}: expected a JSON object keyed by utterance id, "
            f"got a {type(data).__name__}"
        )
    if not data:
        raise ManifestError(f"{path}: manifest has no utterances")
    ids, values = [], []
    for uid, entry in data.items():
        if not isinstance(entry, dict):
            raise ManifestError(
                f"{path}: entry {uid!r} is a {type(entry).__name__}, not an object"
            )
        if duration_key not in entry:
            hint = ""
            others = [k for k in ("duration", "length", "dur") if k in entry]
            if others:
                hint = f"; use --duration-key {others[0]}"
            raise ManifestError(
                f"{path}: entry {uid!r} has no {duration_key!r} field "
                f"(its keys: {', '.join(map(str, entry)) or 'none'}){hint}"
            )
        value = entry[duration_key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ManifestError(
                f"{path}: entry {uid!r} field {duration_key!r} = {value!r} is not "
                "a finite, non-negative number of seconds"
            )
        ids.append(uid)
        values.append(float(value))
    return ids, np.asarray(values, dtype=np.float64)


def format_report(source, report):
    """Format one :func:`padding_report` result as a small text table.

    Arguments
    ---------
    source : str
        Where the durations come from (manifest path or profile name).
    report : dict
        Output of :func:`padding_report`.

    Returns
    -------
    str

    Example
    -------
    >>> r = padding_report([1.0, 1.1, 5.0, 5.2, 9.0, 9.1, 3.0, 3.3], 2, 4, 2, 0)
    >>> print(format_report("toy", r).splitlines()[0])
    == toy ==
    """
    r = report
    ratio = r["padding_ratio"]
    ratio_text = f"{ratio:.1f}x less padding" if ratio is not None else "n/a"
    ours = (
        f"sser duration buckets of {r['bucketed_batch_size']} "
        f"(jitter {r['bucketed_jitter']:g})"
    )
    width = max(len(r["baseline_name"]), len(ours), 28)
    rows = [
        ("utterances", f"{r['n_utterances']} ({r['total_hours']:.2f} h)"),
        (
            "duration mean / sd (s)",
            f"{r['duration_mean_s']:.2f} / {r['duration_sd_s']:.2f}",
        ),
        (
            "duration min / max (s)",
            f"{r['duration_min_s']:.2f} / {r['duration_max_s']:.2f}",
        ),
    ]
    if r.get("max_duration_s") is not None:
        rows.append(
            (
                "crop, both batchings (s)",
                f"max {r['max_duration_s']:g}: {r['n_cropped']} utterances cropped, "
                f"{r['cropped_total_hours']:.2f} h left",
            )
        )
    lines = [f"== {source} =="]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append(
        f"  {'padding share of computed samples':<{width}}  "
        f"{'padding':>8}  {'audio computed/epoch':>20}"
    )
    for name, share, hours in (
        (r["baseline_name"], r["baseline_padding_share"], r["baseline_computed_hours"]),
        (ours, r["bucketed_padding_share"], r["bucketed_computed_hours"]),
    ):
        lines.append(f"  {name:<{width}}  {share:>8.1%}  {hours:>18.2f} h")
    lines.append(f"  {'ratio (random / bucketed)':<{width}}  {ratio_text}")
    if r["bucketed_batches_repeated"] is not None:
        lines.append(
            f"  {'bucketed batches repeated next epoch':<{width}}  "
            f"{r['bucketed_batches_repeated']:.1%}"
        )
    lines.append(
        f"  (means over epochs 1-{r['epochs']}, seed {r['seed']}; random batches "
        "drawn like SpeechBrain's\n   ReproducibleRandomSampler with seed + epoch)"
    )
    return "\n".join(lines)


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.evaluation.padding_report",
        description=(
            "Share of computed samples spent on padding: SpeechBrain-style random "
            "batches (SpeechBrain IEMOCAP recipe: random batches of 4) vs. "
            "sser duration-bucketed batches."
        ),
    )
    parser.add_argument(
        "manifests", nargs="*", metavar="MANIFEST.json", help="SpeechBrain manifests"
    )
    parser.add_argument(
        "--iemocap-profile",
        action="store_true",
        help="also report the synthetic IEMOCAP duration profile (5,531 utts)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--baseline-batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1993)
    parser.add_argument("--jitter", type=float, default=DEFAULT_JITTER)
    parser.add_argument(
        "--max-duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="crop: cap the durations at this value for both batchings "
        "(e.g. 12 for 12 s training crops; default: no crop)",
    )
    parser.add_argument(
        "--duration-key",
        default="duration",
        help="manifest field with the duration in seconds (default: duration)",
    )
    parser.add_argument("--json", metavar="OUT.json", help="also write the results")
    return parser


def main(argv=None):
    """Command-line entry point; returns the exit status.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on bad input.

    Example
    -------
    >>> main(["--iemocap-profile", "--epochs", "1"])  # doctest: +ELLIPSIS
    == synthetic IEMOCAP profile ==
    ...
    0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.manifests and not args.iemocap_profile:
        parser.error("give at least one MANIFEST.json or --iemocap-profile")
    sources = []
    try:
        for path in args.manifests:
            _, durations = load_manifest_durations(path, args.duration_key)
            sources.append((str(path), durations))
        if args.iemocap_profile:
            sources.append((IEMOCAP_PROFILE, iemocap_like_durations()))
        results = []
        for source, durations in sources:
            report = padding_report(
                durations,
                batch_size=args.batch_size,
                baseline_batch_size=args.baseline_batch_size,
                epochs=args.epochs,
                seed=args.seed,
                jitter=args.jitter,
                max_duration=args.max_duration,
            )
            results.append({"source": source, **report})
    except (ValueError, TypeError) as err:
        print(f"padding_report: error: {err}", file=sys.stderr)
        return 2
    print("\n\n".join(format_report(r["source"], r) for r in results))
    if args.json:
        try:
            Path(args.json).write_text(
                json.dumps({"reports": results}, indent=2) + "\n", encoding="utf-8"
            )
        except OSError as err:
            print(
                f"padding_report: error: cannot write {args.json}: {err}",
                file=sys.stderr,
            )
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
