"""Score an emotion timeline against a reference: EDER, frame metrics,
boundary F-measure.

    python -m sser_lobes.evaluation.timeline_eval REF PRED [--json scores.json]
        [--frame 0.01] [--tolerance 0.5] [--label-map "happy:hap"]

``REF`` and ``PRED`` are timeline files in any format of
:mod:`sser_lobes.dataio.timeline_files` (``.jsonl``, ``.csv``, ``.rttm``,
Audacity ``.txt``), e.g. the reference written by
:mod:`sser_lobes.synthetic.long_recording` and the output of
``sser-predict --timeline``. Both are laid on a grid of ``frame`` seconds
over the longer of the two; a frame has an emotion, or none (no segment,
``silence``, or ``uncertain``: a prediction that declined to decide).

* **EDER**, the emotion diarization error rate of SpeechBrain's
  emotion-diarization (ZED) recipe, as the diarization error rate is
  defined: ``(missed + false alarm + confusion) / reference emotion time``;
  missed = a reference emotion where the prediction has none, false alarm =
  a predicted emotion where the reference has none, confusion = both have
  one and they differ. (SpeechBrain's ``speechbrain.utils.EDER`` divides by
  the utterance's duration, its non-emotional parts labelled neutral.)
* **frame accuracy** and **UA** (mean per-class recall) over the frames
  with a reference emotion (a frame predicted with none is wrong);
* **boundary precision, recall and F** at ``tolerance`` seconds: the
  times where the frame label changes (silence included), each reference
  boundary matched to at most one predicted boundary.

Speakers are not scored; overlapping segments of one file are laid in file
order (a later one wins) and their overlap is reported.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from sser_lobes.dataio.corpus_csv import parse_label_map
from sser_lobes.dataio.segments import SILENCE, UNCERTAIN
from sser_lobes.dataio.timeline_files import read_segments

__all__ = ["boundary_scores", "evaluate", "frame_grid", "main"]

#: Labels that are no emotion.
NO_EMOTION = {SILENCE, UNCERTAIN, ""}


def frame_grid(spans, frames, frame, classes):
    """Class index of each frame (-1: no emotion) and the overlapped seconds.

    Example
    -------
    >>> from sser_lobes.dataio.timeline_files import Span
    >>> grid, overlap = frame_grid([Span(0.0, 0.2, "ang"), Span(0.3, 0.5, "neu")],
    ...                            6, 0.1, ["neu", "ang"])
    >>> grid.tolist(), overlap
    ([1, 1, -1, 0, 0, -1], 0.0)
    """
    grid = np.full(frames, -1, dtype=np.int64)
    covered = np.zeros(frames, dtype=bool)
    overlap = 0
    index = {label: i for i, label in enumerate(classes)}
    for span in spans:
        first = int(round(span.start / frame))
        last = min(frames, int(round(span.end / frame)))
        if last <= first:
            continue
        overlap += int(covered[first:last].sum())
        covered[first:last] = True
        grid[first:last] = index.get(span.label, -1)
    return grid, overlap * frame


def _boundaries(grid, frame):
    change = np.flatnonzero(grid[1:] != grid[:-1]) + 1
    return change * frame


def boundary_scores(reference, predicted, tolerance):
    """Precision, recall and F of predicted boundaries (seconds) within
    ``tolerance`` of reference ones, matched one to one (closest first).

    Example
    -------
    >>> scores = boundary_scores([1.0, 5.0], [1.2, 3.0, 5.9], tolerance=0.5)
    >>> scores["precision"], scores["recall"], scores["f"], scores["matched"]
    (0.3333, 0.5, 0.4, 1)
    """
    pairs = sorted(
        (abs(r - p), i, j)
        for i, r in enumerate(reference)
        for j, p in enumerate(predicted)
        if abs(r - p) <= tolerance + 1e-9
    )
    used_ref, used_pred, matched = set(), set(), 0
    for _, i, j in pairs:
        if i not in used_ref and j not in used_pred:
            used_ref.add(i)
            used_pred.add(j)
            matched += 1
    n_ref, n_pred = len(reference), len(predicted)
    if n_ref == 0 and n_pred == 0:
        precision = recall = f = 1.0
    else:
        precision = matched / n_pred if n_pred else 0.0
        recall = matched / n_ref if n_ref else 0.0
        f = 2 * precision * recall / (precision + recall) if matched else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f": round(f, 4),
        "reference": n_ref,
        "predicted": n_pred,
        "matched": matched,
    }


def evaluate(reference, predicted, frame=0.01, tolerance=0.5, duration=None):
    """Scores of ``predicted`` spans against ``reference`` spans.

    Arguments
    ---------
    reference, predicted : list of Span
        E.g. from :func:`~sser_lobes.dataio.timeline_files.read_segments`.
    frame : float
        Grid step in seconds.
    tolerance : float
        Boundary tolerance in seconds.
    duration : float or None
        Seconds scored (default: the later end of the two).

    Returns
    -------
    dict
        ``eder``, ``missed``, ``false_alarm``, ``confusion`` (seconds and
        shares of the reference emotion time), ``frame_accuracy``, ``ua``,
        per-class ``recall``, ``boundaries`` (precision, recall, f), the
        times and the overlaps.

    Example
    -------
    >>> from sser_lobes.dataio.timeline_files import Span
    >>> ref = [Span(0, 4, "neu"), Span(4, 8, "ang")]
    >>> pred = [Span(0, 3, "neu"), Span(3, 5, "silence"), Span(5, 8, "neu")]
    >>> scores = evaluate(ref, pred, frame=0.5, tolerance=0.5)
    >>> scores["eder"], scores["missed_seconds"], scores["confusion_seconds"]
    (0.625, 2.0, 3.0)
    >>> scores["frame_accuracy"], scores["ua"]
    (0.375, 0.375)
    """
    if not frame > 0:
        raise ValueError(f"--frame must be positive, got {frame}")
    if not tolerance >= 0:
        raise ValueError(f"--tolerance must be >= 0, got {tolerance}")
    emotions = lambda spans: {s.label for s in spans} - NO_EMOTION  # noqa: E731
    classes = sorted(emotions(reference) | emotions(predicted))
    if duration is None:
        duration = max([s.end for s in reference + predicted] + [0.0])
    frames = int(round(duration / frame))
    ref, ref_overlap = frame_grid(reference, frames, frame, classes)
    pred, pred_overlap = frame_grid(predicted, frames, frame, classes)
    has_ref, has_pred = ref >= 0, pred >= 0
    missed = int((has_ref & ~has_pred).sum())
    false_alarm = int((~has_ref & has_pred).sum())
    confusion = int((has_ref & has_pred & (ref != pred)).sum())
    correct = has_ref & (ref == pred)
    reference_frames = int(has_ref.sum())
    recall = {}
    for i, label in enumerate(classes):
        count = int((ref == i).sum())
        if count:
            recall[label] = round(float((correct & (ref == i)).sum()) / count, 4)
    total = reference_frames or 1
    return {
        "eder": round((missed + false_alarm + confusion) / total, 4)
        if reference_frames
        else None,
        "missed": round(missed / total, 4),
        "false_alarm": round(false_alarm / total, 4),
        "confusion": round(confusion / total, 4),
        "missed_seconds": round(missed * frame, 3),
        "false_alarm_seconds": round(false_alarm * frame, 3),
        "confusion_seconds": round(confusion * frame, 3),
        "reference_emotion_seconds": round(reference_frames * frame, 3),
        "scored_seconds": round(frames * frame, 3),
        "frame_accuracy": round(float(correct.sum()) / total, 4)
        if reference_frames
        else None,
        "ua": round(float(np.mean(list(recall.values()))), 4) if recall else None,
        "recall": recall,
        "boundaries": boundary_scores(
            _boundaries(ref, frame).tolist(),
            _boundaries(pred, frame).tolist(),
            tolerance,
        ),
        "frame": frame,
        "tolerance": tolerance,
        "overlap_seconds": {
            "reference": round(ref_overlap, 3),
            "prediction": round(pred_overlap, 3),
        },
    }


def format_table(scores):
    """The scores as a printed table.

    Example
    -------
    >>> print(format_table({"eder": 0.25, "missed": 0.1, "false_alarm": 0.05,
    ...     "confusion": 0.1, "frame_accuracy": 0.8, "ua": 0.7,
    ...     "boundaries": {"precision": 0.5, "recall": 1.0, "f": 0.6667},
    ...     "tolerance": 0.5, "reference_emotion_seconds": 60.0}).splitlines()[1])
    EDER                       25.00 %
    """

    def percent(value):
        return "-" if value is None else f"{100 * value:.2f} %"

    bounds = scores["boundaries"]
    rows = [
        ("metric", "value"),
        ("EDER", percent(scores["eder"])),
        ("  missed emotion", percent(scores["missed"])),
        ("  false alarm", percent(scores["false_alarm"])),
        ("  confusion", percent(scores["confusion"])),
        ("frame accuracy", percent(scores["frame_accuracy"])),
        ("frame UA", percent(scores["ua"])),
        (f"boundary F ({scores['tolerance']} s)", percent(bounds["f"])),
        (
            "  precision / recall",
            f"{percent(bounds['precision'])} / {percent(bounds['recall'])}",
        ),
        ("reference emotion time", f"{scores['reference_emotion_seconds']:.1f} s"),
    ]
    return "\n".join(f"{name:<26} {value}" for name, value in rows)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m sser_lobes.evaluation.timeline_eval",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("reference", help="reference timeline (.jsonl/.csv/.rttm/.txt)")
    parser.add_argument("prediction", help="predicted timeline (same formats)")
    parser.add_argument("--frame", type=float, default=0.01, help="seconds (0.01)")
    parser.add_argument(
        "--tolerance", type=float, default=0.5, help="boundary tolerance, s (0.5)"
    )
    parser.add_argument("--duration", type=float, help="seconds scored (default: both)")
    parser.add_argument(
        "--label-map", help='reference classes renamed, e.g. "happy:hap,angry:ang"'
    )
    parser.add_argument("--json", help="write the scores here")
    return parser


def main(argv=None):
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        mapping = parse_label_map(args.label_map, option="--label-map")
        reference = [
            s._replace(label=mapping.get(s.label, s.label))
            for s in read_segments(args.reference)
        ]
        predicted = read_segments(args.prediction)
        scores = evaluate(
            reference, predicted, args.frame, args.tolerance, args.duration
        )
    except ValueError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    scores["reference"], scores["prediction"] = args.reference, args.prediction
    print(format_table(scores))
    for what, seconds in scores["overlap_seconds"].items():
        if seconds:
            print(
                f"note: {seconds} s of overlapping segments in the {what}: laid in "
                "file order",
                file=sys.stderr,
            )
    unknown = sorted(
        {s.label for s in predicted} - {s.label for s in reference} - NO_EMOTION
    )
    if unknown:
        print(
            f"note: predicted classes not in the reference: {', '.join(unknown)} "
            "(--label-map renames reference classes)",
            file=sys.stderr,
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(scores, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
