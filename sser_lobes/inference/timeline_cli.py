"""``sser-predict --timeline`` and ``sser-predict --stream``: the command line
of :mod:`sser_lobes.inference.timeline`.

Files: one timeline per input, written as ``--timeline-format`` to
``--output`` (a file for one input; a folder for several, with
``summary.json``) or printed; ``--plot`` writes the PNG; a one-line summary
per file and the notes (no speech found, ...) go to stderr; a file that
cannot be read is one ``error:`` line and the others go on (exit status 1).

Stream: ``--stream -`` reads standard input (raw PCM as ``--stream-format``
/ ``--stream-rate`` / ``--stream-channels`` say, or a WAV stream, which
says it itself) and prints each segment, flushed, as soon as it is
decided; at the end of the input it flushes what it has.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sser_lobes.dataio.timeline_files import (
    SUFFIXES,
    format_header,
    format_segment,
    read_rttm_turns,
    read_segments,
)
from sser_lobes.errors import AudioError
from sser_lobes.inference.timeline import TimelineOptions, TimelineStream, summary

__all__ = ["options_from_args", "run", "summary_line"]


def options_from_args(args):
    """The :class:`TimelineOptions` of the parsed command line."""
    return TimelineOptions(
        vad=args.vad,
        vad_threshold=args.vad_threshold,
        energy_threshold_db=args.energy_threshold,
        min_speech=args.min_speech,
        min_silence=args.min_silence,
        speech_pad=args.speech_pad,
        window=args.window,
        hop=args.hop,
        min_window=args.min_window,
        smoothing=args.smoothing,
        smoothing_windows=args.smoothing_windows,
        min_segment=args.min_segment,
        uncertain_below=args.uncertain_below,
        silence=not args.no_silence,
        batch_size=args.batch_size,
    )


def summary_line(info):
    """One line of a file's summary.

    Example
    -------
    >>> summary_line({"file": "a.wav", "duration": 10.0, "speech_seconds": 6.0,
    ...               "segments": 3, "changes": 2,
    ...               "share": {"neu": 0.5, "silence": 0.5}})
    'a.wav: 10.0 s, speech 6.0 s, 3 segments, 2 changes; neu 50 %, silence 50 %'
    """
    shares = sorted(info["share"].items(), key=lambda item: -item[1])
    parts = ", ".join(f"{label} {100 * share:.0f} %" for label, share in shares)
    return (
        f"{info['file']}: {info['duration']:.1f} s, speech "
        f"{info['speech_seconds']:.1f} s, {info['segments']} segments, "
        f"{info['changes']} changes" + (f"; {parts}" if parts else "")
    )


def _check(parser, args):
    if args.stream and args.timeline:
        parser.error("give --timeline FILES or --stream -, not both")
    if args.csv:
        parser.error("--csv does not go with --timeline or --stream")
    if args.stream and args.inputs:
        parser.error("--stream reads standard input: give no input files")
    if args.stream and args.stream != "-":
        parser.error("--stream takes '-' (standard input)")
    if args.stream and args.speakers:
        parser.error("--speakers goes with --timeline FILES, not --stream")
    if args.timeline and not args.inputs:
        parser.error("--timeline needs audio files or folders")
    if args.plot_reference and not (args.plot and args.timeline):
        parser.error("--plot-reference goes with --timeline FILE --plot PNG")
    if args.stream_rate <= 0 or args.stream_channels <= 0:
        parser.error("--stream-rate and --stream-channels must be positive")


def run(parser, args, load_model, find_audio):
    """Run ``--timeline`` or ``--stream``; return the exit status.

    ``load_model(args)`` and ``find_audio(inputs)`` are ``sser-predict``'s.
    """
    _check(parser, args)
    options = options_from_args(args)
    try:
        options.resolved(model_window=float("inf"))
    except ValueError as error:
        parser.error(str(error))
    recognizer = load_model(args)
    if recognizer is None:
        return 2
    if recognizer.hparams.task != "categorical":
        print(
            "error: a timeline needs a categorical model; "
            f"{args.model} is an attribute model",
            file=sys.stderr,
        )
        return 2
    try:
        options.resolved(model_window=float(recognizer.hparams.window_seconds))
        if options.vad == "silero":
            from sser_lobes.dataio.vad import silero_model_file

            silero_model_file()
    except (ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.stream:
        return _run_stream(args, recognizer, options)
    return _run_files(args, recognizer, options, find_audio)


# ------------------------------------------------------------------- stream
def _run_stream(args, recognizer, options):
    from sser_lobes.dataio.stream import open_stream

    source = sys.stdin.buffer
    try:
        blocks = open_stream(
            source,
            recognizer.sample_rate,
            source_rate=args.stream_rate,
            channels=args.stream_channels,
            sample_format=args.stream_format,
        )
    except AudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stream = TimelineStream(recognizer, options, eager=True)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        header = format_header(args.timeline_format, recognizer.labels)
        if header:
            print(header, file=out, flush=True)
        try:
            for block in blocks:
                _print(stream.push(block), args, recognizer, out)
        except AudioError as error:
            print(f"error: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print("note: interrupted: flushing", file=sys.stderr)
        _print(stream.finish(), args, recognizer, out)
    finally:
        if args.output:
            out.close()
    if blocks.truncated_bytes:
        stream.notes.append(
            f"the stream stopped inside a frame: {blocks.truncated_bytes} bytes "
            "left out"
        )
    timeline = _stream_timeline(stream, options, recognizer)
    _report([summary(timeline)], timeline.notes, args, single=timeline)
    return 0


def _stream_timeline(stream, options, recognizer):
    import numpy as np

    from sser_lobes.inference.timeline import Timeline

    return Timeline(
        name="<stdin>",
        duration=stream.seconds,
        segments=stream.segments,
        notes=stream.notes,
        labels=list(recognizer.labels),
        levels=np.asarray(stream.vad.levels, dtype=np.float32),
        frame_seconds=stream.vad.frame_samples / stream.sample_rate,
        windows=stream.window_probabilities,
        options=options,
    )


def _print(segments, args, recognizer, out, file_id="stdin"):
    for segment in segments:
        line = format_segment(segment, args.timeline_format, recognizer.labels, file_id)
        if line is not None:
            print(line, file=out, flush=True)


# -------------------------------------------------------------------- files
def _output_paths(files, args):
    """Where each file's timeline goes (None: stdout), and the folder."""
    if not args.output:
        return [None] * len(files), None
    output = Path(args.output)
    if len(files) == 1 and not output.is_dir() and output.suffix:
        return [output], None
    names, paths = {}, []
    for path in files:
        name = Path(path).stem
        count = names[name] = names.get(name, 0) + 1
        suffix = SUFFIXES[args.timeline_format]
        paths.append(output / (name + (f"-{count}" if count > 1 else "") + suffix))
    return paths, output


def _plot_paths(files, args):
    if not args.plot:
        return [None] * len(files)
    plot = Path(args.plot)
    if len(files) == 1 and plot.suffix.lower() == ".png":
        return [plot]
    return [plot / (Path(path).stem + ".png") for path in files]


def _run_files(args, recognizer, options, find_audio):
    from sser_lobes.inference.timeline_formats import (
        plot_timeline,
        write_summary,
        write_timeline,
    )

    files = find_audio(args.inputs)
    if not files:
        print("error: no audio files found in the inputs.", file=sys.stderr)
        return 2
    if (
        len(files) > 1
        and not args.output
        and args.timeline_format
        not in (
            "jsonl",
            "rttm",
        )
    ):
        print(
            f"error: --timeline-format {args.timeline_format} of several files "
            "needs --output FOLDER (jsonl and rttm lines name their file)",
            file=sys.stderr,
        )
        return 2
    outputs, folder = _output_paths(files, args)
    plots = _plot_paths(files, args)
    summaries, failed, notes = [], 0, []
    header_done = False
    for path, output, plot in zip(files, outputs, plots):
        try:
            turns = None
            if args.speakers:
                turns = read_rttm_turns(args.speakers, Path(path).stem)
            timeline = recognizer.timeline(path, options, turns=turns)
        except (AudioError, ValueError) as error:
            print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
            failed += 1
            continue
        if output is not None:
            write_timeline(timeline, output, args.timeline_format)
        else:
            if not header_done:
                header = format_header(args.timeline_format, recognizer.labels)
                if header:
                    print(header)
                header_done = True
            for segment in timeline.segments:
                line = format_segment(
                    segment, args.timeline_format, recognizer.labels, Path(path).stem
                )
                if line is None:
                    continue
                if args.timeline_format == "jsonl":
                    line = json.dumps({"file": str(path), **json.loads(line)})
                print(line)
        if plot is not None:
            reference = (
                read_segments(args.plot_reference) if args.plot_reference else None
            )
            plot_timeline(timeline, plot, reference=reference)
        summaries.append(summary(timeline))
        notes += [f"{path}: {note}" for note in timeline.notes]
    summary_path = args.summary or (folder / "summary.json" if folder else None)
    _report(summaries, notes, args, summary_path=summary_path)
    if summary_path and summaries:
        write_summary(summaries, summary_path)
    print(
        f"{len(files) - failed} of {len(files)} files processed"
        + (f", {failed} failed" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


def _report(summaries, notes, args, summary_path=None, single=None):
    for info in summaries:
        print(summary_line(info), file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if single is not None:
        if args.plot:
            from sser_lobes.inference.timeline_formats import plot_timeline

            plot_timeline(single, args.plot)
        if args.summary:
            from sser_lobes.inference.timeline_formats import write_summary

            write_summary(summaries, args.summary)
