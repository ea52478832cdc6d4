"""ONNX export of a trained sser model, checked with ONNX Runtime, and a
small recognizer that runs it.

    python -m sser_lobes.export RUN_FOLDER OUT_DIR --onnx    # adds OUT_DIR/model.onnx

    from sser_lobes.inference.onnx_export import OnnxEmotionRecognizer
    recognizer = OnnxEmotionRecognizer("OUT_DIR")             # or OUT_DIR/model.onnx
    results = recognizer.predict_files(["a.wav", "b.flac"], batch_size=8)

The graph. ``model.onnx`` takes a padded batch, ``waveforms`` (float32
``[batch, samples]``, at the model's sample rate) and ``wav_lens`` (float32
``[batch]``, SpeechBrain relative lengths: valid samples / samples), with
dynamic batch and time axes, and returns ``probabilities`` ``[batch,
classes]`` (categorical models; ``attributes`` on the corpus scale for
attribute models), ``logits``, and ``gender_probabilities`` for
gender-conditioned models. The labels, sample rate, window and task are in
the file's metadata (:data:`METADATA_KEYS`), so the file alone is enough to
run it. The graph does not check lengths: an utterance shorter than
``min_samples`` (the receptive field of one frame, in the metadata) gives
meaningless outputs, where :class:`OnnxEmotionRecognizer` (like the PyTorch
model) refuses it with an error naming the file.

It computes the function of the PyTorch model, exported with the fast eval
modules of :mod:`sser_lobes.encoders.fast_path` switched off: their
utterance-by-utterance CNN and packed feed-forward blocks loop over the
batch in Python, which a traced graph cannot keep. The export uses the
stock transformers modules instead (the fast path computes the same
function, as ``tests/test_ssl_fast_path.py`` checks), with the first-layer
group norm of wav2vec2-base / HuBERT-base style models masked to the valid
frames by tensor operations (:class:`TraceableMaskedGroupNorm`): the graph
stays batch-invariant, like the PyTorch model. The waveform normalisation
over valid samples, the masked pooling and the head are sser's own code,
traced as is.

The check. :func:`export_onnx` runs the written file with ONNX Runtime on a
padded batch of another size and length than the traced example (and on one
unpadded utterance) and compares every output with the PyTorch model's
(:data:`ATOL` + :data:`RTOL` times the value); if any differs, the file is
deleted and :class:`OnnxExportError` says by how much. Text-fused models
(their text encoder is a second model) are not exported.

``onnx`` and ``onnxruntime`` are optional dependencies (``pip install
"sser[bench]"`` or ``onnx onnxruntime``).
"""

import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sser_lobes.encoders.fast_path.call_state import CURRENT_CALL
from sser_lobes.encoders.fast_path.group_norm import MaskedGroupNorm
from sser_lobes.encoders.fast_path.registry import FAST_MODULES
from sser_lobes.encoders.lora import merge_lora
from sser_lobes.errors import OnnxExportError

logger = logging.getLogger(__name__)

#: The file ``python -m sser_lobes.export RUN OUT --onnx`` writes in OUT.
ONNX_FILE = "model.onnx"
#: ONNX opset of the export.
OPSET = 17
#: Outputs of ONNX Runtime and PyTorch agree to ``ATOL + RTOL * |torch|``.
ATOL = 1e-4
RTOL = 1e-3
#: Metadata of the ONNX file (JSON values), read by OnnxEmotionRecognizer.
METADATA_KEYS = (
    "sser_task",
    "sser_labels",
    "sser_sample_rate",
    "sser_window_seconds",
    "sser_chunk_hop_seconds",
    "sser_eval_crop_seconds",
    "sser_min_samples",
)


def _require(module):
    try:
        return __import__(module)
    except ImportError:
        raise OnnxExportError(
            f"the ONNX export needs the {module} package: pip install onnx "
            'onnxruntime (or pip install "sser[bench]").'
        ) from None


class TraceableMaskedGroupNorm(MaskedGroupNorm):
    """:class:`~sser_lobes.encoders.fast_path.group_norm.MaskedGroupNorm` with tensor
    operations only, for tracing.

    The statistics of each row are the mean and (biased) variance of its
    valid frames, computed with a frame mask instead of a loop over the
    batch; padded frames are set to zero, as in the module it replaces
    (same parameters). The valid frames come from ``valid_frames`` or the
    running :meth:`SSLEncoder.forward` call.

    Example
    -------
    >>> norm = MaskedGroupNorm(4)
    >>> x = torch.randn(2, 4, 10)
    >>> frames = torch.tensor([10, 6])
    >>> reference = norm(x, valid_frames=frames)
    >>> norm.__class__ = TraceableMaskedGroupNorm
    >>> torch.allclose(norm(x, valid_frames=frames), reference, atol=1e-5)
    True
    """

    def forward(self, x, valid_frames=None):
        """Normalise ``x`` ``[batch, channels, time]`` over its valid frames."""
        if valid_frames is None:
            call = CURRENT_CALL.get()
            if call is None or call.first_norm_frames is None:
                return nn.GroupNorm.forward(self, x)
            valid_frames = call.first_norm_frames
        positions = torch.arange(x.shape[-1], device=x.device)
        mask = (positions[None, :] < valid_frames[:, None]).to(torch.float32)
        mask = mask[:, None, :]
        x32 = x.float()
        count = mask.sum(-1, keepdim=True).clamp(min=1.0)
        mean = (x32 * mask).sum(-1, keepdim=True) / count
        var = (((x32 - mean) * mask) ** 2).sum(-1, keepdim=True) / count
        y = (x32 - mean) * torch.rsqrt(var + self.eps)
        y = y * self.weight.float()[None, :, None] + self.bias.float()[None, :, None]
        return (y * mask).to(x.dtype)


_STOCK_MODULES = {fast: stock for stock, fast in FAST_MODULES.items()}


def stock_graph_copy(model):
    """A copy of ``model`` (eval mode) whose SSL encoder uses the stock
    transformers modules and :class:`TraceableMaskedGroupNorm`, LoRA
    adapters merged into the weights.

    It computes the same function as ``model`` (the fast eval path of
    :mod:`sser_lobes.encoders.fast_path` equals stock transformers), with code a
    tracer can follow.

    Example
    -------
    >>> import tempfile
    >>> from sser_lobes import SSLEncoder
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/m", arch="hubert")
    >>> encoder = SSLEncoder(folder, finetune="frozen").eval()
    >>> stock = stock_graph_copy(encoder)
    >>> type(stock.model.feature_extractor).__name__
    'HubertFeatureEncoder'
    >>> wavs, lens = torch.randn(2, 9000), torch.tensor([1.0, 0.6])
    >>> torch.allclose(stock(wavs, lens)[0], encoder(wavs, lens)[0], atol=1e-5)
    True
    """
    copied = copy.deepcopy(model).eval()
    # Stock WavLM attention reads the projection weights directly: kept LoRA
    # adapters are merged into them first (the same function).
    merge_lora(copied)
    for module in copied.modules():
        if type(module) in _STOCK_MODULES:
            module.__class__ = _STOCK_MODULES[type(module)]
        elif type(module) is MaskedGroupNorm:
            module.__class__ = TraceableMaskedGroupNorm
    return copied


class OnnxGraph(nn.Module):
    """What ``model.onnx`` computes: ``(waveforms, wav_lens)`` to the
    outputs named in :attr:`output_names`.

    Arguments
    ---------
    model : sser_lobes.EmotionModel
        The model, fast path on.
    task : str
        ``"categorical"`` (softmax probabilities) or ``"attributes"``
        (outputs scaled to ``attribute_range``).
    attribute_range : tuple of float
        The corpus scale of attribute models.
    stock : bool
        Run a :func:`stock_graph_copy` of ``model`` (what is traced);
        ``False`` runs ``model`` itself (the reference of the check).
    """

    def __init__(
        self, model, task="categorical", attribute_range=(1.0, 7.0), stock=True
    ):
        super().__init__()
        if getattr(model, "text_fusion", None) is not None:
            raise OnnxExportError(
                "text-fused models are not exported to ONNX (their text encoder "
                "is a second model); use EmotionRecognizer."
            )
        self.model = stock_graph_copy(model) if stock else model
        self.task = task
        self.low, self.high = (float(v) for v in attribute_range)
        self.has_gender = getattr(model, "gender", None) is not None

    @property
    def output_names(self):
        """The graph's outputs, in order."""
        names = ["probabilities" if self.task == "categorical" else "attributes"]
        names.append("logits")
        if self.has_gender:
            names.append("gender_probabilities")
        return names

    def forward(self, waveforms, wav_lens):
        """Outputs of a padded batch, as a tuple in :attr:`output_names` order."""
        out = self.model(waveforms, wav_lens)
        logits = out["logits"].float()
        if self.task == "categorical":
            first = torch.softmax(logits, dim=-1)
        else:
            first = logits * (self.high - self.low) + self.low
        outputs = [first, logits]
        if self.has_gender:
            outputs.append(torch.softmax(out["gender_logits"].float(), dim=-1))
        return tuple(outputs)


def _example_batch(min_samples, seed=0):
    """A padded batch of 2 to trace: 1.5 s and 0.8 s (at 16 kHz)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = [max(24000, 2 * min_samples), max(12800, min_samples + 1)]
    wavs = torch.zeros(2, lengths[0])
    for row, length in enumerate(lengths):
        wavs[row, :length] = 0.1 * torch.randn(length, generator=gen)
    return wavs, torch.tensor(lengths, dtype=torch.float32) / lengths[0]


def check_batches(min_samples, seed=1):
    """The batches the export is checked on: 3 utterances of other lengths
    than the traced example (padded), and 1 alone (unpadded).

    Example
    -------
    >>> [tuple(w.shape) for w, _ in check_batches(400)]
    [(3, 30100), (1, 9000)]
    """
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for lengths in ([30100, max(7300, min_samples), 18000], [9000]):
        wavs = torch.zeros(len(lengths), max(lengths))
        for row, length in enumerate(lengths):
            t = torch.arange(length) / 16000
            tone = torch.sin(2 * torch.pi * (120 + 40 * row) * t)
            wavs[row, :length] = 0.2 * tone + 0.05 * torch.randn(length, generator=gen)
        batches.append(
            (wavs, torch.tensor(lengths, dtype=torch.float32) / max(lengths))
        )
    return batches


def _session(path, threads=None):
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def compare_with_torch(path, graph, batches):
    """Largest ``|onnx - torch|`` and its excess over the tolerance, per output.

    ``graph`` is an :class:`OnnxGraph` of the PyTorch model (its fast eval
    path: the check covers the switch to stock modules too).

    Returns
    -------
    dict
        ``{output name: (max |diff|, max |diff| - tolerance)}``; the export
        checks when every second value is <= 0.
    """
    session = _session(path)
    worst = {name: (0.0, -np.inf) for name in graph.output_names}
    for wavs, lens in batches:
        with torch.no_grad():
            expected = graph(wavs, lens)
        got = session.run(None, {"waveforms": wavs.numpy(), "wav_lens": lens.numpy()})
        for name, ref, out in zip(graph.output_names, expected, got):
            ref = ref.numpy()
            diff = np.abs(out - ref)
            excess = float((diff - (ATOL + RTOL * np.abs(ref))).max())
            previous = worst[name]
            worst[name] = (
                max(previous[0], float(diff.max())),
                max(previous[1], excess),
            )
    return worst


def export_onnx(model, path, metadata, task="categorical", attribute_range=(1, 7)):
    """Write ``model`` as an ONNX file and check it with ONNX Runtime.

    Arguments
    ---------
    model : sser_lobes.EmotionModel
        A trained fp32 model (not changed; a stock-module copy is exported).
    path : str or Path
        The ``.onnx`` file to write.
    metadata : dict
        Stored in the file as JSON strings (:data:`METADATA_KEYS`, without
        the ``sser_`` prefix): ``labels``, ``sample_rate``,
        ``window_seconds``, ... .
    task, attribute_range :
        As in :class:`OnnxGraph`.

    Returns
    -------
    dict
        ``{output name: max |onnx - torch|}`` on the check batches.

    Raises
    ------
    OnnxExportError
        If a check output differs beyond the tolerance (the file is removed).
    """
    onnx = _require("onnx")
    path = Path(path)
    graph = OnnxGraph(model, task, attribute_range).eval()
    min_samples = int(graph.model.encoder.min_samples)
    names = graph.output_names
    axes = {"waveforms": {0: "batch", 1: "samples"}, "wav_lens": {0: "batch"}}
    axes.update({name: {0: "batch"} for name in names})
    with warnings.catch_warnings(), torch.no_grad():
        # Tracer warnings: Python branches on tensors (the too-short check,
        # the fast path's valid-row bookkeeping) are constants in the graph;
        # the check below runs other shapes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            _example_batch(min_samples),
            str(path),
            dynamo=False,
            input_names=["waveforms", "wav_lens"],
            output_names=names,
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"sser_{key}", json.dumps(value)
    proto.doc_string = "sser emotion recognizer (sser_lobes.inference.onnx_export)"
    onnx.save(proto, str(path))
    reference = OnnxGraph(model.eval(), task, attribute_range, stock=False)
    report = compare_with_torch(path, reference, check_batches(min_samples))
    failed = {name: diff for name, (diff, excess) in report.items() if excess > 0}
    if failed:
        path.unlink()
        details = ", ".join(f"{name} {diff:.2e}" for name, diff in failed.items())
        raise OnnxExportError(
            f"{path}: ONNX Runtime's outputs differ from PyTorch's on a padded "
            f"batch beyond {ATOL} + {RTOL} * |value| (max |diff|: {details}); the "
            "file was removed."
        )
    return {name: diff for name, (diff, _) in report.items()}


def export_folder_onnx(folder):
    """Add ``model.onnx`` to an exported model folder (``sser_lobes.inference.export``).

    The folder is loaded with the checked loader
    (:meth:`~sser_lobes.inference.recognizer.EmotionRecognizer.from_hparams`), so the
    ONNX graph has exactly the weights of ``model.safetensors``.

    Returns
    -------
    path : pathlib.Path
        The written ``model.onnx``.
    report : dict
        ``{output name: max |onnx - torch|}`` (see :func:`export_onnx`).
    """
    from sser_lobes.inference.recognizer import EmotionRecognizer

    folder = Path(folder)
    recognizer = EmotionRecognizer.from_hparams(str(folder), run_opts={"device": "cpu"})
    hparams = recognizer.hparams
    metadata = {
        "task": hparams.task,
        "labels": list(recognizer.labels),
        "sample_rate": int(hparams.sample_rate),
        "window_seconds": float(hparams.window_seconds),
        "chunk_hop_seconds": float(hparams.chunk_hop_seconds),
        "eval_crop_seconds": getattr(hparams, "eval_crop_seconds", None),
        "min_samples": int(recognizer.min_samples),
    }
    path = folder / ONNX_FILE
    report = export_onnx(
        recognizer.mods.model,
        path,
        metadata,
        task=hparams.task,
        attribute_range=getattr(hparams, "attribute_range", (1.0, 7.0)),
    )
    return path, report


#: The ONNX operators sser's exports use (every encoder kind, pooling, head
#: and conditioning), and close relatives: a graph with any other operator,
#: a custom domain or control flow (``Loop``, ``If``, ``Scan``) is refused.
ONNX_OPERATORS = frozenset(
    """Abs Add And ArgMax BatchNormalization Cast Ceil Clip Concat Constant
    ConstantOfShape Conv CumSum Div Equal Erf Exp Expand Flatten Floor Gather
    Gemm Greater GreaterOrEqual Identity IsNaN LayerNormalization Less
    LessOrEqual Log MatMul Max Min Mod Mul Neg Not Or Pad Pow Range Reciprocal
    ReduceMax ReduceMean ReduceSum Relu Reshape Round ScatterND Shape Sigmoid
    Sign Slice Softmax Split Sqrt Squeeze Sub Tanh Tile Transpose Unsqueeze
    Where Xor""".split()
)


def check_onnx_file(path, n_outputs):
    """Refuse an ONNX file sser did not write the way it writes them: tensors
    kept in external data files (an external data location is a path, which
    could name any file of the machine), sparse tensors, operators outside
    :data:`ONNX_OPERATORS` (custom domains, control flow that can run
    forever), or a first output without ``n_outputs`` columns.

    Raises
    ------
    sser_lobes.errors.ModelFormatError
    """
    from sser_lobes.errors import ModelFormatError

    onnx = _require("onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises protobuf's DecodeError and others
        summary = " ".join(str(error).split()) or type(error).__name__
        raise ModelFormatError(f"{path}: not an ONNX model ({summary})") from None
    graph = proto.graph
    tensors = list(graph.initializer)
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ONNX_OPERATORS:
            raise ModelFormatError(
                f"{path}: uses the operator {node.domain or 'ai.onnx'}.{node.op_type}, "
                "which sser's ONNX exports never hold"
            )
        for attribute in node.attribute:
            if attribute.HasField("g") or len(attribute.graphs):
                raise ModelFormatError(f"{path}: holds a subgraph ({node.op_type})")
            if attribute.HasField("sparse_tensor") or len(attribute.sparse_tensors):
                raise ModelFormatError(f"{path}: holds a sparse tensor")
            if attribute.HasField("t"):
                tensors.append(attribute.t)
            tensors.extend(attribute.tensors)
    if len(graph.sparse_initializer) or len(proto.functions):
        raise ModelFormatError(f"{path}: holds sparse tensors or local functions")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
        raise ModelFormatError(
            f"{path}: keeps tensors in external data files; sser's ONNX exports "
            "hold their weights inside the file"
        )
    outputs = graph.output
    dims = outputs[0].type.tensor_type.shape.dim if outputs else []
    if not dims or dims[-1].dim_value != n_outputs:
        raise ModelFormatError(
            f"{path}: its first output does not give {n_outputs} values per "
            "utterance (one per label of sser_model.json)"
        )


class OnnxEmotionRecognizer:
    """Run an exported ``model.onnx`` with ONNX Runtime (no PyTorch model).

    The settings (task, labels, sample rate, windows) are read from the model
    folder's ``sser_model.json`` with the checks of
    :mod:`sser_lobes.inference.model_description`, as the PyTorch recognizer
    reads them; ``model.onnx`` must lie inside the folder, keep its weights
    inside the file (no external data files, which could name any file of
    the machine) and give one output per label. The description's
    ``calibration`` is applied to the graph's ``logits`` output, as the
    PyTorch recognizer applies it (``calibrated=False``: the graph's own
    softmax).

    Arguments
    ---------
    source : str or Path
        An export folder holding ``model.onnx``, or that ``.onnx`` file.
    threads : int or None
        ONNX Runtime's intra-op threads (``None``: its default).

    Example
    -------
    >>> import tempfile, json, pathlib
    >>> from sser_lobes import EmotionModel, LinearHead, MeanPooling, SSLEncoder
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> from sser_lobes.nnet.description import FORMAT, FORMAT_VERSION, describe_model
    >>> encoder = SSLEncoder(make_tiny_ssl(tempfile.mkdtemp() + "/m"))
    >>> model = EmotionModel(encoder, MeanPooling(32), LinearHead(32, 2)).eval()
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> description = {"format": FORMAT, "format_version": FORMAT_VERSION,
    ...     "task": "categorical", "labels": ["neu", "ang"], "sample_rate": 16000,
    ...     "window_seconds": 10.0, "architecture": describe_model(model)}
    >>> _ = (folder / "sser_model.json").write_text(json.dumps(description))
    >>> meta = {"task": "categorical", "labels": ["neu", "ang"],
    ...         "sample_rate": 16000, "window_seconds": 10.0,
    ...         "chunk_hop_seconds": 5.0, "eval_crop_seconds": None,
    ...         "min_samples": encoder.min_samples}
    >>> report = export_onnx(model, folder / ONNX_FILE, meta)
    >>> sorted(report), report["probabilities"] < ATOL
    (['logits', 'probabilities'], True)
    >>> recognizer = OnnxEmotionRecognizer(folder)
    >>> wavs, lens = torch.randn(2, 16000), torch.tensor([1.0, 0.7])
    >>> onnx_probs = recognizer.predict_batch(wavs.numpy(), lens.numpy())
    >>> torch_probs = torch.softmax(model(wavs, lens)["logits"], -1)
    >>> bool(abs(onnx_probs - torch_probs.detach().numpy()).max() < ATOL)
    True
    """

    def __init__(self, source, threads=None):
        from sser_lobes.encoders.ssl_encoder import receptive_field
        from sser_lobes.errors import ModelFormatError
        from sser_lobes.inference.model_description import (
            DESCRIPTION_FILE,
            model_file,
            read_description,
            validate_description,
        )

        source = Path(source)
        folder = source if source.is_dir() else source.parent
        name = ONNX_FILE if source.is_dir() else source.name
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name}: no such ONNX file (write one with: python -m "
                "sser_lobes.export RUN_FOLDER OUT_FOLDER --onnx)"
            )
        description = validate_description(
            read_description(folder), folder / DESCRIPTION_FILE
        )
        self.path = model_file(folder, name, "ONNX model")
        self.task = description["task"]
        self.labels = list(description["labels"])
        self.sample_rate = int(description["sample_rate"])
        self.window_seconds = float(description["window_seconds"])
        self.chunk_hop_seconds = float(description["chunk_hop_seconds"])
        self.eval_crop_seconds = description["eval_crop_seconds"]
        self.calibration = description["calibration"]
        config = description["architecture"]["encoder"]["config"]
        self.min_samples = receptive_field(
            config.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2]),
            config.get("conv_stride", [5, 2, 2, 2, 2, 2, 2]),
        )
        check_onnx_file(self.path, len(self.labels))
        try:
            self.session = _session(self.path, threads)
        except Exception as error:  # onnxruntime's own exception types
            summary = " ".join(str(error).split())[:300] or type(error).__name__
            raise ModelFormatError(
                f"{self.path}: ONNX Runtime cannot load it: {summary}"
            ) from None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, waveforms, wav_lens, calibrated=True):
        """All outputs of a padded batch: ``{name: numpy array}``; with
        ``calibrated`` (and a calibration in the description), the
        probabilities are the softmax of the calibrated logits."""
        from sser_lobes.evaluation.calibration import calibrated_probabilities

        feeds = {
            "waveforms": np.ascontiguousarray(waveforms, dtype=np.float32),
            "wav_lens": np.ascontiguousarray(wav_lens, dtype=np.float32),
        }
        try:
            outputs = self.session.run(None, feeds)
        except Exception as error:  # onnxruntime's own exception types
            summary = " ".join(str(error).split())[:300] or type(error).__name__
            raise RuntimeError(f"{self.path}: ONNX Runtime failed: {summary}") from None
        outputs = dict(zip(self.output_names, outputs))
        if calibrated and self.calibration and "probabilities" in outputs:
            outputs["probabilities"] = calibrated_probabilities(
                outputs["logits"], self.calibration
            ).astype(np.float32)
        return outputs

    def predict_batch(self, waveforms, wav_lens, calibrated=True):
        """Probabilities (or attributes) ``[batch, K]`` of a padded batch."""
        return self.run(waveforms, wav_lens, calibrated)[self.output_names[0]]

    def load_audio(self, path):
        """Read, downmix, resample and crop a file as EmotionRecognizer does."""
        from sser_lobes.dataio.audio import load_audio_any

        wav = load_audio_any(
            path, sample_rate=self.sample_rate, min_samples=self.min_samples
        )
        if self.eval_crop_seconds:
            wav = wav[: int(round(self.eval_crop_seconds * self.sample_rate))]
        return wav

    def predict_files(self, paths, batch_size=8, calibrated=True, min_confidence=None):
        """Predict files sorted by length in batches; errors are per file.

        Audio longer than the model's window is classified in overlapping
        chunks whose probabilities are pooled (categorical models), as
        :meth:`sser_lobes.inference.recognizer.EmotionRecognizer.predict_files` does.

        Returns
        -------
        list of dict
            In the order of ``paths``, the same dicts as
            :meth:`~sser_lobes.inference.recognizer.EmotionRecognizer.predict_files`.
        """
        from sser_lobes.dataio.chunking import pool_chunk_scores, split_into_chunks
        from sser_lobes.errors import AudioError
        from sser_lobes.inference.recognizer import _pad

        paths = [str(p) for p in paths]
        results = [None] * len(paths)
        audio = {}
        for i, path in enumerate(paths):
            try:
                audio[i] = self.load_audio(path)
            except AudioError as error:
                results[i] = {"file": path, "error": str(error)}
        window = int(round(self.window_seconds * self.sample_rate))
        hop = int(round(self.chunk_hop_seconds * self.sample_rate))
        short = sorted(
            (i for i in audio if len(audio[i]) <= window), key=lambda i: len(audio[i])
        )
        for start in range(0, len(short), batch_size):
            group = short[start : start + batch_size]
            wavs, lens = _pad([audio[i] for i in group])
            outputs = self.run(wavs.numpy(), lens.numpy(), calibrated)
            for row, i in enumerate(group):
                results[i] = self._result(paths[i], outputs, row, min_confidence)
        for i in (i for i in audio if len(audio[i]) > window):
            if self.task != "categorical":
                results[i] = {"file": paths[i], "error": "longer than the window"}
                continue
            chunks, bounds = split_into_chunks(audio[i], window, hop)
            probs = []
            for start in range(0, len(chunks), batch_size):
                wavs, lens = _pad(chunks[start : start + batch_size])
                probs.append(self.predict_batch(wavs.numpy(), lens.numpy(), calibrated))
            pooled = pool_chunk_scores(torch.from_numpy(np.concatenate(probs)), bounds)
            results[i] = self._result(
                paths[i], {"probabilities": pooled[None].numpy()}, 0, min_confidence
            )
            results[i]["chunks"] = len(bounds)
        return results

    def _result(self, path, outputs, row, min_confidence=None):
        from sser_lobes.inference.recognizer import prediction_result

        return prediction_result(path, outputs, row, self.labels, min_confidence)
