"""Every error type of sser, in one module at the bottom of the package.

Each is a ``ValueError`` whose message is one line naming the file or the
option and the problem; the command lines print it as ``error: ...``
instead of a traceback. They live here, below every subpackage, so that any
layer can raise or catch any of them without importing a higher layer (the
import-direction rule of ``tests/test_layout.py``).

=====================  ====================================================
error                  raised by
=====================  ====================================================
``AudioError``         :mod:`sser_lobes.dataio.audio` (a file that cannot be
                       read or used)
``PreparationError``   the data preparations (:mod:`sser_lobes.dataio`)
``CorpusError``        :mod:`sser_lobes.dataio.corpus_csv`
``ManifestError``      :mod:`sser_lobes.dataio.pipelines`,
                       :mod:`sser_lobes.evaluation.padding_report`
``RecipeError``        the recipes' checks (:mod:`sser_lobes.training`)
``FeatureCacheError``  :mod:`sser_lobes.training.feature_cache`
``MissingTextError``   :mod:`sser_lobes.text.cache`
``QuantizationError``  :mod:`sser_lobes.encoders.quantize`
``ExportError``        :mod:`sser_lobes.inference.export`
``OnnxExportError``    :mod:`sser_lobes.inference.onnx_export`
``ModelFormatError``   :mod:`sser_lobes.inference.model_description` (a model
                       folder that is not a valid sser model)
``QueueFullError``     :mod:`sser_lobes.inference.dynamic_batching` (the
                       bounded queue is full: the server answers 429)
``BatcherClosedError`` :mod:`sser_lobes.inference.dynamic_batching` (the
                       batcher stopped: the server answers 503)
``UploadLimitError``   :mod:`sser_lobes.inference.server` (audio over the
                       service's duration limit: it answers 413)
=====================  ====================================================

Example
-------
>>> from sser_lobes.errors import RecipeError
>>> issubclass(RecipeError, ValueError)
True
"""

import os


class AudioError(ValueError):
    """A problem with an audio file; the message names the file and the problem.

    Arguments
    ---------
    path : str or os.PathLike
        The file concerned.
    problem : str
        What is wrong with it (and, where useful, what was expected).

    Example
    -------
    >>> err = AudioError("clip.wav", "file not found")
    >>> str(err)
    'clip.wav: file not found'
    >>> err.path, err.problem
    ('clip.wav', 'file not found')
    >>> isinstance(err, ValueError)
    True
    """

    def __init__(self, path, problem=None):
        if problem is None:
            # Rebuilt from a message alone: what torch's DataLoader does when a
            # worker raised it ("Caught AudioError in DataLoader worker ...").
            # The original "<path>: <problem>" line is the message's last line.
            message = str(path)
            lines = [line for line in message.splitlines() if line.strip()]
            last = lines[-1] if lines else message
            last = last.split("AudioError: ", 1)[-1]
            self.path, _, self.problem = last.partition(": ")
            super().__init__(last)
            return
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # Keep the exception picklable (e.g. raised inside a DataLoader worker).
        return (type(self), (self.path, self.problem))


class PreparationError(ValueError):
    """A problem with the corpus or the save folder; the message says which file.

    Example
    -------
    >>> try:
    ...     raise PreparationError("x.txt, line 3: unknown emotion code 'joy'")
    ... except ValueError as exc:
    ...     print(exc)
    x.txt, line 3: unknown emotion code 'joy'
    """


class CorpusError(PreparationError):
    """The corpus file cannot be used at all (missing, no header, no column)."""


class ManifestError(ValueError):
    """A manifest that cannot be used: missing, not valid JSON, an empty
    required split, an entry without a usable label or duration. The message
    names the file and the entry."""


class RecipeError(ValueError):
    """A user's mistake in a recipe's options or inputs; the message says which.

    Example
    -------
    >>> str(RecipeError("--test_session must be 1-5, got 9"))
    '--test_session must be 1-5, got 9'
    """


class FeatureCacheError(RecipeError):
    """A problem with the feature cache; the message names the file or option."""


class MissingTextError(ValueError):
    """Utterances without a transcript while ``missing_text`` is ``error``;
    the message names the manifest and the utterances."""


class QuantizationError(ValueError):
    """An int8 request that cannot be met (device, engine or model)."""


class ExportError(ValueError):
    """A run folder that cannot be exported, or an output folder not ours."""


class OnnxExportError(ValueError):
    """A model that cannot be exported, or an export that does not check."""


class ModelFormatError(ValueError):
    """A model folder that is not a valid sser model: its description or its
    weights. The message is one line naming the file and the problem."""


class QueueFullError(ValueError):
    """A request refused because the bounded request queue is full."""


class BatcherClosedError(ValueError):
    """A request to a dynamic batcher that has stopped."""


class UploadLimitError(ValueError):
    """An upload over a limit of the HTTP service (its audio's duration)."""
