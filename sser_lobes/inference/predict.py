"""Command line inference with a trained sser model.

    sser-predict --model DIR_OR_REPO FILES_OR_FOLDERS... [--output out.jsonl|out.csv]
                 [--batch-size N] [--device cpu|cuda] [--quantize int8]
                 [--num-threads N] [--trust-hparams]
    sser-predict --model DIR_OR_REPO --csv corpus.csv [--label-map "calm:neu,..."]
                 [--output preds.csv] [--metrics metrics.json] [...]
    sser-predict --model DIR_OR_REPO --timeline FILES_OR_FOLDERS...
                 [--timeline-format jsonl|csv|rttm|audacity] [--output FILE_OR_DIR]
                 [--plot PNG_OR_DIR] [--vad silero|energy|none] [--window S] [...]
    arecord -f S16_LE -r 16000 | sser-predict --model DIR_OR_REPO --stream -

Folders are searched recursively for audio files. One result per file
(label, score, all probabilities; or the attributes of an attribute model);
a file that cannot be read gets an error naming it and the others go on. The
exit status is 1 if any file failed, 2 if nothing could be run at all
(e.g. a model folder that is not a valid sser model: one line names the file
and the problem, see :mod:`sser_lobes.inference.model_description`; loading
runs no code of the folder).
``--quantize int8`` runs the SSL encoder in dynamic int8 on the CPU
(:mod:`sser_lobes.encoders.quantize`); with ``--device cuda`` it is refused.
``--num-threads`` sets torch's CPU threads (:mod:`sser_lobes.encoders.threads`,
the recipes' ``--num_threads``).

``--csv`` evaluates the model on a prepared corpus without retraining. The
file is the one :mod:`sser_lobes.dataio.corpus_csv` reads: one utterance per row,
``wav`` (absolute or relative to the CSV's folder), optional ``start`` /
``end`` (a segment, in seconds), ``emotion``, ``text`` (the transcript of a
text-fused model), ``id``. Rows are predicted in length-sorted batches as
files are; each result also carries the row's ``id``, ``wav``, ``start`` /
``end`` and ``emotion`` (after ``--label-map``). With an ``emotion`` column,
the rows whose class is one of the model's are scored over the whole set
(WA, UA, macro-F1, confusion matrix, :mod:`sser_lobes.evaluation.corpus_eval`); the
other classes are left out and counted, with a warning naming the
``--label-map`` that would map them. The metrics go to ``--metrics`` (default
``<output stem>_metrics.json`` next to ``--output``; without either, a
summary on stderr), with the confusion matrix as a PNG next to them. Rows
that cannot be used (missing audio, a segment outside its file, ...) are
listed on stderr with the CSV's file and line, and make the exit status 1::

    sser-predict --model my_model --csv ravdess.csv --label-map "calm:neu" \\
        --output ravdess_preds.csv   # + ravdess_preds_metrics.json, .png

``--timeline`` gives each file's emotion over time
(:mod:`sser_lobes.inference.timeline`): speech found by a VAD, classified in
windows, smoothed, segments with start and end times, silence between them;
one segment file per input (``--output`` is a file for one input, a folder
for several, with ``summary.json``), a PNG with ``--plot``, a summary per
file on stderr. ``--speakers turns.rttm`` makes the timeline per speaker
turn. ``--stream -`` reads raw PCM (``--stream-format``, ``--stream-rate``,
``--stream-channels``) or a WAV stream from standard input and prints each
segment as soon as it is decided.
"""

import argparse
import csv
import json
import os
import sys
from pathlib import Path

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au"}


def find_audio(inputs):
    """Files given directly, plus audio files found (recursively) in folders.

    Example
    -------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "a.wav").touch(); (root / "notes.txt").touch()
    >>> [p.name for p in find_audio([root])]
    ['a.wav']
    """
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in AUDIO_EXTENSIONS
                and not p.name.startswith("._")
            )
        else:
            files.append(path)  # missing files are reported per file
    return files


def write_results(results, output, labels, key_columns=("file",)):
    """Write results as JSON lines (``.jsonl``/``.json``) or CSV (``.csv``).

    ``key_columns`` name each result in the CSV (``file``; for a corpus
    file ``id``, ``wav``, ``start``, ``end``, ``emotion``), followed by
    ``label``, ``score``, ``gender``, one column per class and ``error``.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".csv":
        with open(output, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            values = [f"prob_{label}" for label in labels]
            attribute_model = any("attributes" in r for r in results)
            if attribute_model:
                values = list(labels)
            writer.writerow(
                [*key_columns, "label", "score", "gender", *values, "error"]
            )
            for r in results:
                scores = r.get("attributes") or r.get("probabilities") or {}
                writer.writerow(
                    [
                        *("" if r.get(k) is None else r[k] for k in key_columns),
                        r.get("label", ""),
                        "" if "score" not in r else f"{r['score']:.6f}",
                        r.get("gender", ""),
                        *(
                            "" if label not in scores else f"{scores[label]:.6f}"
                            for label in labels
                        ),
                        r.get("error", ""),
                    ]
                )
    else:
        with open(output, "w", encoding="utf-8") as handle:
            for r in results:
                handle.write(json.dumps(r) + "\n")


def build_parser():
    """The command line's arguments."""
    from sser_lobes.dataio.segments import SMOOTHING_CHOICES
    from sser_lobes.dataio.stream import SAMPLE_FORMATS
    from sser_lobes.dataio.timeline_files import FORMATS
    from sser_lobes.dataio.vad import VAD_CHOICES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", required=True, help="exported model folder or Hub id"
    )
    parser.add_argument(
        "inputs", nargs="*", help="audio files or folders (or give --csv)"
    )
    parser.add_argument(
        "--csv",
        help="a corpus file (CSV, TSV or JSON lines; columns wav, optional id, "
        "start, end, emotion, text): predict its rows and, with an emotion "
        "column, score them",
    )
    parser.add_argument(
        "--label-map",
        help='with --csv: classes of the file renamed, e.g. "calm:neu,fearful:fear"',
    )
    parser.add_argument(
        "--metrics",
        help="with --csv: metrics JSON (default: <output stem>_metrics.json "
        "next to --output; without either, a summary on stderr)",
    )
    parser.add_argument("--output", help="out.jsonl or out.csv (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--num-threads",
        type=int,
        help="torch's CPU threads (default: what torch picks, at most the CPUs "
        "this process may use; fewer can be faster when other jobs share the "
        "cores)",
    )
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        help="int8: dynamic int8 SSL encoder, faster on CPU (CPU only)",
    )
    parser.add_argument("--savedir", help="where to keep a downloaded model")
    parser.add_argument(
        "--trust-hparams",
        action="store_true",
        help="build the model folder's hyperparams.yaml with HyperPyYAML instead "
        "of reading sser_model.json: this RUNS the code the YAML names, only for "
        "folders you wrote yourself",
    )
    parser.add_argument(
        "--asr-source",
        help="a transformers ASR model (Hub id or folder) that transcribes files "
        "without a transcript, for text-fused models (never taken from the "
        "model folder)",
    )
    timeline = parser.add_argument_group(
        "timeline (--timeline FILES, --stream -): emotion over time"
    )
    timeline.add_argument(
        "--timeline",
        action="store_true",
        help="segments with start and end times instead of one label per file",
    )
    timeline.add_argument(
        "--stream",
        metavar="SOURCE",
        help="'-': read live audio from standard input (raw PCM, or a WAV "
        "stream) and print each segment as soon as it is decided",
    )
    timeline.add_argument(
        "--timeline-format", choices=FORMATS, default="jsonl", help="default jsonl"
    )
    timeline.add_argument(
        "--plot", help="the timeline's PNG (a folder for several inputs)"
    )
    timeline.add_argument(
        "--plot-reference",
        help="a reference timeline file, drawn under the labels in the PNG",
    )
    timeline.add_argument(
        "--summary",
        help="the per-file summaries as JSON (default: "
        "<output folder>/summary.json for several inputs, else stderr only)",
    )
    timeline.add_argument(
        "--speakers", help="an RTTM file of speaker turns: a timeline per turn"
    )
    timeline.add_argument("--vad", choices=VAD_CHOICES, default="silero")
    timeline.add_argument("--vad-threshold", type=float, default=0.5)
    timeline.add_argument(
        "--energy-threshold",
        type=float,
        default=-40.0,
        help="dBFS, for --vad energy (default -40)",
    )
    timeline.add_argument("--min-speech", type=float, default=0.25, help="seconds")
    timeline.add_argument("--min-silence", type=float, default=0.3, help="seconds")
    timeline.add_argument("--speech-pad", type=float, default=0.1, help="seconds")
    timeline.add_argument(
        "--window", type=float, help="seconds (default min(3, the model's window))"
    )
    timeline.add_argument("--hop", type=float, help="seconds (default: the window)")
    timeline.add_argument(
        "--min-window",
        type=float,
        default=1.0,
        help="seconds: a region's last window is its rest if that lasts this "
        "long, else a full window aligned to its end (default 1)",
    )
    timeline.add_argument("--smoothing", choices=SMOOTHING_CHOICES, default="median")
    timeline.add_argument("--smoothing-windows", type=int, default=3)
    timeline.add_argument("--min-segment", type=float, default=1.0, help="seconds")
    timeline.add_argument(
        "--uncertain-below",
        type=float,
        help="label 'uncertain' where the top probability is below this",
    )
    timeline.add_argument(
        "--no-silence", action="store_true", help="leave silence segments out"
    )
    timeline.add_argument("--stream-rate", type=int, default=16000)
    timeline.add_argument("--stream-channels", type=int, default=1)
    timeline.add_argument(
        "--stream-format", choices=list(SAMPLE_FORMATS), default="s16le"
    )
    return parser


def main(argv=None):
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stream or args.timeline:
        from sser_lobes.inference import timeline_cli

        return timeline_cli.run(parser, args, _load_model, find_audio)
    if args.csv and args.inputs:
        parser.error("give either audio files or folders, or --csv FILE, not both")
    if not args.csv and not args.inputs:
        parser.error("give audio files or folders, or --csv FILE")
    if not args.csv and (args.label_map or args.metrics):
        parser.error("--label-map and --metrics go with --csv FILE")
    from sser_lobes.encoders.threads import set_num_threads
    from sser_lobes.errors import ModelFormatError

    try:
        set_num_threads(args.num_threads, "--num-threads")
    except ValueError as error:
        parser.error(str(error))
    if args.csv:
        from sser_lobes.dataio.corpus_csv import parse_label_map

        try:
            args.label_map = parse_label_map(args.label_map, option="--label-map")
        except ValueError as error:
            parser.error(str(error))
    try:
        return _predict_corpus(args) if args.csv else _predict_files(args)
    except ModelFormatError as error:  # found only when first needed (text)
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def _load_model(args):
    """The recognizer, or None after printing why it cannot be loaded."""
    from sser_lobes.inference.recognizer import EmotionRecognizer

    try:
        return EmotionRecognizer.from_hparams(
            args.model,
            savedir=args.savedir,
            run_opts={"device": args.device},
            trust_hparams=args.trust_hparams,
            quantize=args.quantize,
            asr_source=args.asr_source,
        )
    except (OSError, ValueError) as error:
        message = " ".join(str(error).split())
        print(f"error: cannot load the model {args.model}: {message}", file=sys.stderr)
        return None


def _emit(results, args, labels, key_columns=("file",)):
    if args.output:
        write_results(results, args.output, labels, key_columns)
    else:
        for r in results:
            print(json.dumps(r))


def _predict_files(args):
    files = find_audio(args.inputs)
    if not files:
        print("error: no audio files found in the inputs.", file=sys.stderr)
        return 2
    recognizer = _load_model(args)
    if recognizer is None:
        return 2
    results = recognizer.predict_files(files, batch_size=args.batch_size, progress=True)
    _emit(results, args, recognizer.labels)
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"error: {r['error']}", file=sys.stderr)
    print(
        f"{len(results) - len(failed)} of {len(results)} files processed"
        + (f", {len(failed)} failed" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


def _predict_corpus(args):
    from sser_lobes.dataio.corpus_csv import read_corpus
    from sser_lobes.errors import CorpusError
    from sser_lobes.evaluation import corpus_eval

    corpus = Path(os.path.abspath(args.csv))  # as read_corpus names it
    try:
        rows, report = read_corpus(
            corpus,
            label_map=args.label_map,
            require=("wav",),
            progressbar=True,
            duplicates="keep",
        )
    except CorpusError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    recognizer = _load_model(args)
    if recognizer is None:
        return 2
    utterances = corpus_eval.corpus_utterances(recognizer, rows)
    results = recognizer.predict_utterances(
        utterances, batch_size=args.batch_size, progress=True
    )
    named = corpus_eval.corpus_results(rows, results)
    _emit(named, args, recognizer.labels, corpus_eval.key_columns(rows))

    # Every row that could not be predicted, one line each, in file order.
    problems = [
        (row.line, f"{corpus}, line {row.line}: {result['error']}")
        for row, result in zip(rows, results)
        if "error" in result
    ]
    skipped = [message for examples in report.examples.values() for message in examples]
    problems += [(_line_of(message, corpus), message) for message in skipped]
    problems.sort(key=lambda item: item[0])
    n_failed = report.total + sum("error" in r for r in results)
    for line in corpus_eval.listed_errors([m for _, m in problems], n_failed):
        print(line, file=sys.stderr)

    n_rows = len(rows) + report.total
    if corpus_eval.has_labels(rows):
        _write_metrics(args, recognizer, corpus, rows, results, n_rows, n_failed)
    elif args.metrics:
        print(
            f"warning: {corpus} has no emotion labels: no metrics, "
            f"{args.metrics} not written",
            file=sys.stderr,
        )
    print(
        f"{n_rows - n_failed} of {n_rows} rows processed"
        + (f", {n_failed} failed" if n_failed else ""),
        file=sys.stderr,
    )
    return 1 if n_failed else 0


def _line_of(message, corpus):
    """The line number of a ``<corpus>, line <n>: ...`` message (else 0)."""
    prefix = f"{corpus}, line "
    number = message[len(prefix) :].split(":", 1)[0]
    return int(number) if message.startswith(prefix) and number.isdigit() else 0


def _write_metrics(args, recognizer, corpus, rows, results, n_rows, n_failed):
    from sser_lobes.evaluation import corpus_eval

    if recognizer.hparams.task != "categorical":
        print(
            "note: an attribute model: no classification metrics for the "
            "emotion column",
            file=sys.stderr,
        )
        return
    evaluation = corpus_eval.evaluate_corpus(rows, results, recognizer.labels)
    for line in evaluation.warnings():
        print(f"warning: {line}", file=sys.stderr)
    model = Path(args.model)
    report = corpus_eval.metrics_report(
        evaluation,
        n_rows=n_rows,
        n_failed=n_failed,
        model=str(model.resolve()) if model.is_dir() else args.model,
        corpus=corpus,
        label_map=args.label_map,
    )
    if not len(evaluation.stats):
        print(
            "warning: no row has a class of the model and a prediction: no metrics",
            file=sys.stderr,
        )
    path = args.metrics or (
        corpus_eval.default_metrics_path(args.output) if args.output else None
    )
    print(corpus_eval.summary_line(report), file=sys.stderr)
    if path is None:
        if "confusion_matrix" in report:
            matrix = report["confusion_matrix"]
            print(
                corpus_eval.format_confusion(matrix, report["labels"]), file=sys.stderr
            )
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "confusion_matrix" in report:
        from sser_lobes.evaluation.plots import plot_confusion_matrix

        png = corpus_eval.confusion_png_path(path)
        plot_confusion_matrix(
            report["confusion_matrix"],
            report["labels"],
            png,
            title=f"{corpus.name} ({report['n_evaluated']} rows)",
        )
        report["confusion_matrix_png"] = png.name
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"metrics written to {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
