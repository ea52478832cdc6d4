"""Evaluate an exported model on a corpus file: ``sser-predict --csv``.

The corpus file is the one :mod:`sser_lobes.dataio.corpus_csv` reads (one row per
utterance: ``wav``, optional ``start`` / ``end``, ``emotion``, ``text``...).
Every row is predicted (:meth:`~sser_lobes.inference.recognizer.EmotionRecognizer.
predict_utterances`); when the file has labels, the rows whose class (after
the label map) is one of the model's are scored over the whole set with
:class:`~sser_lobes.evaluation.metrics.ClassificationStats`. The others are left out of
the metrics and counted per class, with a warning that says how to map them.

Authors
 * sser authors 2026
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sser_lobes.dataio.files import file_sha256
from sser_lobes.evaluation.metrics import ClassificationStats

#: Problems listed one line each before "... and N more".
MAX_LISTED_ERRORS = 10


def corpus_utterances(recognizer, rows):
    """One :class:`~sser_lobes.inference.recognizer.Utterance` per corpus row.

    The row's segment (``start`` / ``end``) if it has one, else the whole
    file; its ``text`` as the transcript; its duration orders the batches.
    """
    return [
        recognizer.utterance(
            row.wav, row.start, row.end, text=row.text, seconds=row.duration
        )
        for row in rows
    ]


def has_segments(rows):
    """Whether any row is a segment (``start`` or ``end`` given)."""
    return any(row.start is not None or row.end is not None for row in rows)


def has_labels(rows):
    """Whether any row has an ``emotion``."""
    return any(row.raw_emotion is not None for row in rows)


def key_columns(rows):
    """Columns naming a row in the output: id, wav, [start, end], [emotion]."""
    columns = ["id", "wav"]
    if has_segments(rows):
        columns += ["start", "end"]
    if has_labels(rows):
        columns.append("emotion")
    return columns


def corpus_results(rows, results):
    """Prediction results named by their row (id, wav, segment, emotion).

    Example
    -------
    >>> from sser_lobes.dataio.corpus_csv import CorpusRow
    >>> row = CorpusRow(id="u1", wav="/data/a.wav", line=2, emotion="neu",
    ...                 raw_emotion="neutral", start=0.5, end=1.5)
    >>> corpus_results([row], [{"file": "/data/a.wav", "label": "sad"}])
    [{'id': 'u1', 'wav': '/data/a.wav', 'start': 0.5, 'end': 1.5, 'emotion': 'neu', 'label': 'sad'}]
    """  # noqa: E501
    columns = key_columns(rows)
    named = []
    for row, result in zip(rows, results):
        entry = {column: getattr(row, column) for column in columns}
        entry.update((k, v) for k, v in result.items() if k != "file")
        named.append(entry)
    return named


@dataclass
class CorpusEvaluation:
    """The scored rows of a corpus and the counts of the others.

    Arguments
    ---------
    stats : ClassificationStats
        Rows predicted without error whose class is one of the model's.
    dropped : Counter
        Class (after the label map) -> rows of a class the model lacks.
    dropped_sources : dict
        Class -> the classes as written in the file that gave it.
    unlabelled : int
        Predicted rows without an ``emotion``.
    """

    stats: ClassificationStats
    dropped: Counter = field(default_factory=Counter)
    dropped_sources: dict = field(default_factory=dict)
    unlabelled: int = 0

    @property
    def labels(self):
        """The model's classes."""
        return self.stats.labels

    def warnings(self):
        """One line per class left out of the metrics, most rows first.

        Example
        -------
        >>> from collections import Counter
        >>> evaluation = CorpusEvaluation(
        ...     ClassificationStats(["neu", "hap", "sad", "ang"]),
        ...     dropped=Counter({"calm": 192, "angry": 3}),
        ...     dropped_sources={"calm": {"calm"}, "angry": {"angry"}})
        >>> for line in evaluation.warnings():
        ...     print(line)
        calm 192 rows: not a class of the model (ang, hap, neu, sad), left out of the metrics; use --label-map calm:<class> to map it
        angry 3 rows: not a class of the model (ang, hap, neu, sad), left out of the metrics; use --label-map angry:ang to map it
        """  # noqa: E501
        model_classes = ", ".join(sorted(self.labels))
        lines = []
        for name, count in sorted(self.dropped.items(), key=lambda kv: -kv[1]):
            sources = sorted(self.dropped_sources.get(name) or {name})
            written = "" if sources == [name] else f" (written {', '.join(sources)})"
            target = _guess_class(name, self.labels)
            mapping = ",".join(f"{source}:{target}" for source in sources)
            lines.append(
                f"{name} {count} row{'s' * (count != 1)}{written}: not a class of "
                f"the model ({model_classes}), left out of the metrics; use "
                f"--label-map {mapping} to map it"
            )
        if self.unlabelled:
            lines.append(
                f"{self.unlabelled} row{'s' * (self.unlabelled != 1)} without an "
                "emotion: predicted, left out of the metrics"
            )
        return lines


def _guess_class(name, labels):
    """The one model class ``name`` abbreviates or extends, else ``<class>``.

    Example
    -------
    >>> _guess_class("Neutral", ["neu", "hap"]), _guess_class("calm", ["neu"])
    ('neu', '<class>')
    """
    low = name.lower()
    matches = [
        label
        for label in labels
        if low.startswith(label.lower()) or label.lower().startswith(low)
    ]
    return matches[0] if len(matches) == 1 and low else "<class>"


def evaluate_corpus(rows, results, labels):
    """Score the predicted rows whose class is one of the model's ``labels``.

    Arguments
    ---------
    rows : list of CorpusRow
        The corpus rows (``emotion`` after the label map).
    results : list of dict
        Their predictions, in the same order (``probabilities`` or
        ``error``).
    labels : list of str
        The model's classes.

    Returns
    -------
    CorpusEvaluation
        Rows with an error are in none of its counts.

    Example
    -------
    >>> from sser_lobes.dataio.corpus_csv import CorpusRow
    >>> rows = [CorpusRow(id=f"u{i}", wav="a.wav", line=i + 2, emotion=emotion)
    ...         for i, emotion in enumerate(["neu", "sad", "calm", "sad"])]
    >>> results = [{"probabilities": {"neu": 0.8, "sad": 0.2}},
    ...            {"probabilities": {"neu": 0.6, "sad": 0.4}},
    ...            {"probabilities": {"neu": 0.5, "sad": 0.5}},
    ...            {"error": "a.wav: silent"}]
    >>> evaluation = evaluate_corpus(rows, results, ["neu", "sad"])
    >>> len(evaluation.stats), dict(evaluation.dropped)
    (2, {'calm': 1})
    >>> evaluation.stats.summarize()["WA"]
    0.5
    """
    index = {label: i for i, label in enumerate(labels)}
    evaluation = CorpusEvaluation(ClassificationStats(labels))
    sources = defaultdict(set)
    ids, probabilities, targets = [], [], []
    for row, result in zip(rows, results):
        if "error" in result:
            continue
        if row.emotion is None:
            evaluation.unlabelled += 1
        elif row.emotion not in index:
            evaluation.dropped[row.emotion] += 1
            sources[row.emotion].add(row.raw_emotion or row.emotion)
        else:
            ids.append(row.id)
            probabilities.append([result["probabilities"][c] for c in labels])
            targets.append(index[row.emotion])
    if ids:
        evaluation.stats.append(ids, probabilities, targets)
    evaluation.dropped_sources = dict(sources)
    return evaluation


def metrics_report(evaluation, n_rows, n_failed, model, corpus, label_map):
    """The metrics file's content: metrics, counts and what was evaluated.

    Arguments
    ---------
    evaluation : CorpusEvaluation
    n_rows : int
        Rows of the corpus file (kept and skipped).
    n_failed : int
        Rows that could not be predicted (skipped by the corpus check or
        unreadable audio).
    model : str
        The model's source.
    corpus : str or os.PathLike
        The corpus file (its sha256 is recorded).
    label_map : dict
        The label map applied.

    Returns
    -------
    dict
        ``WA``, ``UA``, ``macro_F1``, ``micro_F1``, ``per_class``,
        ``confusion_matrix``, ``labels``, ``class_counts`` (rows per true
        class) and ``predicted_counts`` (absent if no row was evaluated);
        ``n_rows``, ``n_evaluated``, ``n_dropped``, ``dropped_classes``,
        ``n_unlabelled``, ``n_failed``; ``model``, ``corpus``,
        ``corpus_sha256``, ``label_map``.
    """
    report = {}
    labels = evaluation.labels
    if len(evaluation.stats):
        report.update(evaluation.stats.summarize())
        matrix = report["confusion_matrix"]
        report["class_counts"] = {c: sum(matrix[i]) for i, c in enumerate(labels)}
        report["predicted_counts"] = {
            c: sum(line[i] for line in matrix) for i, c in enumerate(labels)
        }
    report.update(
        {
            "labels": list(labels),
            "n_rows": n_rows,
            "n_evaluated": len(evaluation.stats),
            "n_dropped": sum(evaluation.dropped.values()),
            "dropped_classes": dict(sorted(evaluation.dropped.items())),
            "n_unlabelled": evaluation.unlabelled,
            "n_failed": n_failed,
            "model": model,
            "corpus": str(corpus),
            "corpus_sha256": file_sha256(corpus),
            "label_map": dict(label_map),
        }
    )
    return report


def summary_line(report):
    """One line: the metrics and the row counts.

    Example
    -------
    >>> summary_line({"WA": 0.75, "UA": 0.5, "macro_F1": 0.4, "n_rows": 6,
    ...               "n_evaluated": 4, "n_dropped": 1, "n_unlabelled": 0,
    ...               "n_failed": 1})
    'WA 0.7500, UA 0.5000, macro-F1 0.4000 on 4 of 6 rows (1 left out: class not in the model; 1 failed)'
    """  # noqa: E501
    if "WA" in report:
        scores = (
            f"WA {report['WA']:.4f}, UA {report['UA']:.4f}, "
            f"macro-F1 {report['macro_F1']:.4f}"
        )
    else:
        scores = "no metrics"
    others = []
    if report["n_dropped"]:
        others.append(f"{report['n_dropped']} left out: class not in the model")
    if report["n_unlabelled"]:
        others.append(f"{report['n_unlabelled']} without an emotion")
    if report["n_failed"]:
        others.append(f"{report['n_failed']} failed")
    tail = f" ({'; '.join(others)})" if others else ""
    return f"{scores} on {report['n_evaluated']} of {report['n_rows']} rows{tail}"


def format_confusion(matrix, labels):
    """A text confusion matrix (rows: true class, columns: predicted).

    Example
    -------
    >>> print(format_confusion([[5, 1], [0, 4]], ["neu", "ang"]))
    true \\ predicted  neu  ang
    neu                 5    1
    ang                 0    4
    """
    cells = [str(label) for label in labels] + [str(n) for row in matrix for n in row]
    width = max(len(cell) for cell in cells)
    first = max([len("true \\ predicted")] + [len(label) for label in labels])
    lines = [
        "true \\ predicted".ljust(first) + "".join(f"  {c:>{width}}" for c in labels)
    ]
    for label, counts in zip(labels, matrix):
        lines.append(label.ljust(first) + "".join(f"  {n:>{width}}" for n in counts))
    return "\n".join(lines)


def default_metrics_path(output):
    """``<output stem>_metrics.json`` next to the predictions file.

    Example
    -------
    >>> default_metrics_path("out/preds.csv").as_posix()
    'out/preds_metrics.json'
    """
    output = Path(output)
    return output.with_name(f"{output.stem}_metrics.json")


def confusion_png_path(metrics_path):
    """The confusion-matrix PNG next to a metrics file.

    Example
    -------
    >>> confusion_png_path("out/preds_metrics.json").as_posix()
    'out/preds_confusion_matrix.png'
    >>> confusion_png_path("scores.json").as_posix()
    'scores_confusion_matrix.png'
    """
    metrics_path = Path(metrics_path)
    stem = metrics_path.stem
    stem = stem[: -len("metrics")] if stem.endswith("metrics") else stem + "_"
    return metrics_path.with_name(f"{stem}confusion_matrix.png")


def listed_errors(messages, total=None, limit=MAX_LISTED_ERRORS):
    """``error: ...`` lines for the first ``limit`` messages, then how many more.

    Example
    -------
    >>> for line in listed_errors(["c.csv, line 3: a.wav: file not found"] * 3,
    ...                           limit=2):
    ...     print(line)
    error: c.csv, line 3: a.wav: file not found
    error: c.csv, line 3: a.wav: file not found
    ... and 1 more
    """
    total = len(messages) if total is None else total
    lines = [f"error: {message}" for message in messages[:limit]]
    if total > len(lines):
        lines.append(f"... and {total - len(lines)} more")
    return lines
