"""The emotion timeline of one recording, for the web demo and the server.

:func:`classify_with_timeline` is the one place both get a timeline from:
today the recognizer's per-chunk probabilities (the windows
:meth:`~sser_lobes.inference.recognizer.EmotionRecognizer.classify_file`
uses with ``return_timeline=True``), pooled for the file's result as
``classify_file`` pools them. A finer timeline of the recognizer replaces
the body of this function, and both callers follow.

Example
-------
>>> import tempfile, torch
>>> from sser_lobes.inference.recognizer import EmotionRecognizer
>>> from sser_lobes.inference import export
>>> from sser_lobes import EmotionModel, LinearHead, MeanPooling, SSLEncoder
>>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
>>> from sser_lobes.nnet.description import describe_run
>>> root = tempfile.mkdtemp()
>>> enc = SSLEncoder(make_tiny_ssl(root + "/ssl"), finetune="frozen")
>>> model = EmotionModel(enc, MeanPooling(32), LinearHead(32, 2)).eval()
>>> hparams = {"model": model, "emotions": ["neu", "ang"], "sample_rate": 16000}
>>> export.write_model_folder(root, describe_run(hparams, 1.0), model)
>>> recognizer = EmotionRecognizer.from_hparams(root)
>>> result = classify_with_timeline(recognizer, torch.randn(40000), "x.wav")
>>> [(row["start"], row["end"]) for row in result["timeline"]]
[(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5)]
>>> sorted(result)
['file', 'label', 'probabilities', 'score', 'timeline']
"""

from sser_lobes.dataio.chunking import pool_chunk_scores, timeline
from sser_lobes.inference.recognizer import prediction_result


def window_seconds(recognizer):
    """The longest audio the model classifies in one window, in seconds."""
    return float(recognizer.hparams.window_seconds)


def classify_with_timeline(recognizer, wav, name):
    """A waveform's result with its per-window timeline.

    Arguments
    ---------
    recognizer : EmotionRecognizer
        A categorical model.
    wav : torch.Tensor
        ``[samples]`` at the model's rate (as ``recognizer.load_audio``
        returns it).
    name : str
        Names the audio in the result.

    Returns
    -------
    dict
        As :meth:`EmotionRecognizer.predict_files` (``file``, ``label``,
        ``score``, ``probabilities``), plus ``timeline``: one row per window
        with ``start`` / ``end`` (seconds), ``label``, ``score`` and
        ``probabilities``.
    """
    _, bounds, chunk_probs = recognizer._classify_waveform(wav)
    pooled = pool_chunk_scores(chunk_probs, bounds)
    result = prediction_result(
        name, {"probabilities": pooled[None]}, 0, recognizer.labels
    )
    result["timeline"] = timeline(
        chunk_probs, bounds, recognizer.sample_rate, recognizer.labels
    )
    return result
