"""A web page for a model folder: ``sser-demo MODEL`` (Gradio).

    sser-demo MODEL [--host 127.0.0.1] [--port 7860]

A person uploads or records audio and sees the label, the class
probabilities as a bar chart and, for audio longer than the model's window,
the emotion timeline: per-window probabilities over time, as a chart and a
table (:func:`sser_lobes.inference.timeline_view.classify_with_timeline`,
the one function the HTTP service's ``timeline=true`` uses too). The model
is loaded by :meth:`EmotionRecognizer.from_hparams` (data only). An
exported folder's ``app.py`` (:mod:`sser_lobes.inference.space`) runs the
same page as a Hub Space.

Nothing is fetched from outside: Gradio's analytics are off and the page
uses the browser's own fonts.
"""

import argparse
import os
import sys

from sser_lobes.errors import AudioError, ModelFormatError
from sser_lobes.inference.timeline_view import classify_with_timeline, window_seconds

#: Columns of the timeline table.
TIMELINE_COLUMNS = ["start (s)", "end (s)", "label", "score"]


def analyse(recognizer, path):
    """What the page shows for one audio file.

    Arguments
    ---------
    recognizer : EmotionRecognizer
        A categorical model.
    path : str
        The uploaded or recorded file.

    Returns
    -------
    probabilities : dict of str to float
        For the label and its bar chart.
    rows : list of list
        The timeline table (``start``, ``end``, ``label``, ``score``); empty
        when the audio fits in one window.
    figure : matplotlib.figure.Figure or None
        The timeline chart (None without a timeline).

    Raises
    ------
    sser_lobes.errors.AudioError
        Naming the file (unreadable, too short, silent).
    """
    wav = recognizer.load_audio(path)
    result = classify_with_timeline(recognizer, wav, os.path.basename(str(path)))
    timeline = result["timeline"]
    if len(timeline) < 2:
        return result["probabilities"], [], None
    rows = [
        [round(r["start"], 2), round(r["end"], 2), r["label"], round(r["score"], 4)]
        for r in timeline
    ]
    return result["probabilities"], rows, timeline_figure(timeline, recognizer.labels)


def timeline_figure(timeline, labels):
    """Per-window probabilities over time (each window at its centre).

    Example
    -------
    >>> rows = [{"start": 0.0, "end": 2.0, "probabilities": {"a": 0.9, "b": 0.1}},
    ...     {"start": 1.0, "end": 3.0, "probabilities": {"a": 0.2, "b": 0.8}}]
    >>> figure = timeline_figure(rows, ["a", "b"])
    >>> [line.get_label() for line in figure.axes[0].get_lines()]
    ['a', 'b']
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 2.6), layout="constrained")
    axes = figure.subplots()
    centres = [(r["start"] + r["end"]) / 2 for r in timeline]
    for label in labels:
        axes.plot(centres, [r["probabilities"][label] for r in timeline], label=label)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("probability")
    axes.set_ylim(0, 1)
    axes.legend(loc="upper right", ncols=min(len(labels), 4), fontsize="small")
    return figure


def build_demo(recognizer, title=None):
    """The Gradio page of ``recognizer`` (not launched).

    Returns
    -------
    gradio.Blocks
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    if recognizer.hparams.task != "categorical":
        raise ValueError(
            "sser-demo shows class probabilities: this is an attribute model"
        )
    labels = recognizer.labels
    window = window_seconds(recognizer)
    title = title or "Speech emotion recognition"

    def run(path):
        if not path:
            raise gr.Error("Upload or record some audio first.")
        try:
            probabilities, rows, figure = analyse(recognizer, path)
        except AudioError as problem:
            raise gr.Error(str(problem)) from None
        top = max(probabilities, key=probabilities.get)
        summary = f"**{top}** ({100 * probabilities[top]:.1f} %)"
        visible = bool(rows)
        return (
            probabilities,
            summary,
            gr.update(value=figure, visible=visible),
            gr.update(value=rows, visible=visible),
        )

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {title}\nClasses: {', '.join(labels)}. Audio longer than "
            f"{window:g} s gets an emotion timeline (windows of {window:g} s)."
        )
        with gr.Row():
            audio = gr.Audio(
                sources=["upload", "microphone"],
                type="filepath",
                label="Audio",
                elem_id="audio-input",
            )
            with gr.Column():
                summary = gr.Markdown(elem_id="prediction")
                chart = gr.Label(
                    num_top_classes=len(labels),
                    label="Class probabilities",
                    elem_id="probabilities",
                )
        button = gr.Button("Classify", variant="primary", elem_id="classify")
        plot = gr.Plot(label="Emotion timeline", visible=False, elem_id="timeline")
        table = gr.Dataframe(
            headers=TIMELINE_COLUMNS,
            label="Timeline (per window)",
            visible=False,
            interactive=False,
            elem_id="timeline-table",
        )
        outputs = [chart, summary, plot, table]
        button.click(run, inputs=audio, outputs=outputs)
        audio.change(
            lambda path: run(path) if path else (None, "", None, None),
            inputs=audio,
            outputs=outputs,
        )
    return demo


def launch_options():
    """``demo.launch`` options: no telemetry, no web fonts, no SSR."""
    import gradio as gr

    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    theme = gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])
    return {"theme": theme, "ssr_mode": False, "footer_links": ["api"]}


def main(argv=None):
    """Command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="sser-demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("model", help="an exported sser model folder or Hub repo id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--quantize", choices=["int8"], default=None)
    args = parser.parse_args(argv)
    from sser_lobes.inference.recognizer import EmotionRecognizer

    try:
        recognizer = EmotionRecognizer.from_hparams(args.model, quantize=args.quantize)
        demo = build_demo(recognizer)
    except (ModelFormatError, OSError, ValueError) as problem:
        print(f"error: {' '.join(str(problem).split())}", file=sys.stderr)
        return 2
    demo.launch(server_name=args.host, server_port=args.port, **launch_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
