"""One-line inference with a trained sser model, from a folder or the Hub.

    from sser_lobes import EmotionRecognizer
    rec = EmotionRecognizer.from_hparams("sser/wavlm-large-iemocap")
    probabilities, score, index, label = rec.classify_file("speech.wav")

The model folder is what ``python -m sser_lobes.export`` writes:
``sser_model.json`` (the model described as data: task, labels, sample rate,
windows, the SSL encoder's config, pooling, head, conditioning) and
``model.safetensors`` (the whole EmotionModel, SSL encoder included).

Loading runs nothing the folder chose. The description is read with
:mod:`json` and checked against the schema of
:mod:`sser_lobes.inference.model_description`; the modules are built by this
package's code; the weights are read from ``model.safetensors`` (tensors
only) after their names and shapes are checked against the description. No
``hyperparams.yaml`` is read, no ``custom.py`` is fetched, no file outside
the folder is followed. ``trust_hparams=True`` instead builds the folder's
``hyperparams.yaml`` with HyperPyYAML, which RUNS the code the YAML names:
only for files you wrote yourself. A text-fused model's text encoder is read
from the folder's ``text_encoder/`` (safetensors weights, no remote code);
the ASR model for missing transcripts is the caller's choice
(``asr_source=``), never the folder's.

Same numbers as the recipes: the forward pass is the recipes'
:class:`sser_lobes.EmotionModel`, audio is read the same way, and padding
never changes an utterance's output, so a file gets the same prediction alone
or in a batch. Any input a user has is accepted (any sample rate, stereo,
wav / flac / ogg); audio longer than the model's window is classified in
overlapping chunks whose probabilities are pooled (``return_timeline`` gives
the per-chunk results). Gender-conditioned models predict the gender
themselves; text-fused models take an optional transcript, or use the
caller's ASR model, or fall back to their learned empty-text embedding.
"""

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from speechbrain.inference.interfaces import Pretrained

from sser_lobes.dataio.audio import (
    SILENT_PEAK,
    audio_info,
    load_audio_any,
    load_audio_segment,
)
from sser_lobes.dataio.chunking import pool_chunk_scores, split_into_chunks, timeline
from sser_lobes.encoders.quantize import (
    QUANTIZE_CHOICES,
    check_int8_device,
    quantize_int8,
)
from sser_lobes.errors import AudioError, ModelFormatError
from sser_lobes.inference.model_description import (
    DESCRIPTION_FILE,
    TEXT_ENCODER_FOLDER,
    WEIGHTS_FILE,
    check_text_encoder,
    load_model,
    model_file,
    read_description,
    validate_description,
)

logger = logging.getLogger(__name__)

#: Peak amplitude under which audio is refused as silent (the default of
#: :func:`sser_lobes.dataio.audio.load_audio_any`; segments get the same check).
SILENCE_THRESHOLD = SILENT_PEAK


def prediction_result(name, outputs, row, labels):
    """The result dict of row ``row`` of a batch's outputs.

    ``outputs`` holds ``probabilities`` (categorical) or ``attributes``, and
    optionally ``gender_probabilities``, as tensors or numpy arrays (the
    PyTorch and the ONNX Runtime recognizers give the same dicts).

    Example
    -------
    >>> outputs = {"probabilities": torch.tensor([[0.25, 0.75]])}
    >>> result = prediction_result("a.wav", outputs, 0, ["neu", "ang"])
    >>> result["label"], result["probabilities"]
    ('ang', {'neu': 0.25, 'ang': 0.75})
    """
    if "probabilities" in outputs:
        probs = [float(p) for p in outputs["probabilities"][row]]
        best = max(range(len(probs)), key=probs.__getitem__)
        result = {
            "file": name,
            "label": labels[best],
            "score": probs[best],
            "probabilities": dict(zip(labels, probs)),
        }
    else:
        values = [float(v) for v in outputs["attributes"][row]]
        result = {"file": name, "attributes": dict(zip(labels, values))}
    if "gender_probabilities" in outputs:
        female, male = (float(p) for p in outputs["gender_probabilities"][row])
        result["gender"] = "F" if female >= male else "M"
    return result


class Utterance(NamedTuple):
    """One utterance for :meth:`EmotionRecognizer.predict_utterances`.

    Arguments
    ---------
    name : str
        Names the utterance in its result (the ``"file"`` key).
    load : callable
        ``load()`` returns the waveform at the model's rate (a 1-D tensor) or
        raises :class:`~sser_lobes.errors.AudioError`; called when the
        utterance's batch is run, so only one batch is held in memory.
    text : str or None
        Transcript for text-fused models (None: the model's behaviour for a
        missing transcript, the caller's ASR or its learned empty-text
        embedding).
    seconds : float or None
        Expected duration, which orders the batches (None: 0).

    Example
    -------
    >>> utterance = Utterance("tone", load=lambda: torch.zeros(16000), seconds=1.0)
    >>> utterance.load().shape, utterance.text
    (torch.Size([16000]), None)
    """

    name: str
    load: Callable
    text: str | None = None
    seconds: float | None = None


def load_safetensors_state(module, path):
    """Load a safetensors state dict into ``module`` (strict).

    The loading hook that the ``hyperparams.yaml`` written for plain
    SpeechBrain users names (``Pretrained.from_hparams``).

    Example
    -------
    >>> import tempfile, os
    >>> from safetensors.torch import save_file
    >>> layer = torch.nn.Linear(2, 2)
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> save_file({k: v.clone() for k, v in layer.state_dict().items()}, path)
    >>> other = torch.nn.Linear(2, 2)
    >>> load_safetensors_state(other, path)
    >>> torch.equal(other.weight, layer.weight)
    True
    """
    from safetensors.torch import load_file

    state = load_file(str(path), device="cpu")
    module.load_state_dict(state, strict=True)


def _looks_like_path(source):
    text = str(source)
    return text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") != 1


def model_folder(source, savedir=None, revision=None, files=(DESCRIPTION_FILE,)):
    """The local folder of a model: ``source`` itself, or the folder its Hub
    files are downloaded to.

    A Hub repository's ``files`` are downloaded (as real files, no links)
    into ``savedir``, by default ``~/.cache/sser/<owner>--<name>``; a local
    folder is read in place (nothing is written there).
    """
    local = Path(str(source)).expanduser()
    if local.is_dir():
        return local
    if _looks_like_path(source):
        raise FileNotFoundError(f"{source}: no such model folder")
    from huggingface_hub import hf_hub_download

    if savedir is None:
        savedir = Path.home() / ".cache" / "sser" / str(source).replace("/", "--")
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # the error raised says it in one line
    try:
        for name in files:
            hf_hub_download(
                repo_id=str(source), filename=name, revision=revision, local_dir=savedir
            )
    finally:
        hub_logger.setLevel(level)
    return Path(savedir)


class EmotionRecognizer(Pretrained):
    """Speech emotion recognition with an exported sser model.

    Load with ``EmotionRecognizer.from_hparams(FOLDER_OR_REPO_ID)`` (see
    :meth:`from_hparams`); ``run_opts={"device": "cuda"}`` picks the device;
    ``quantize="int8"`` runs the SSL encoder's linear layers in int8 on the
    CPU (:mod:`sser_lobes.encoders.quantize`).

    Categorical models: :meth:`classify_file`, :meth:`classify_batch`,
    :meth:`predict_files`. Attribute (arousal / valence / dominance) models:
    :meth:`predict_batch`, :meth:`predict_files`. Segments of files (corpus
    rows): :meth:`utterance` and :meth:`predict_utterances`.
    """

    HPARAMS_NEEDED = ["labels", "sample_rate", "task", "window_seconds"]
    MODULES_NEEDED = ["model"]

    @classmethod
    def from_hparams(
        cls,
        source,
        overrides=None,
        savedir=None,
        revision=None,
        download_only=False,
        trust_hparams=False,
        hparams_file="hyperparams.yaml",
        quantize=None,
        asr_source=None,
        **kwargs,
    ):
        """Load a model folder or a Hub repository: data only, no code.

        Arguments
        ---------
        source : str or Path
            An exported model folder (read in place: nothing is written
            there) or a Hub repository id (its files are downloaded into
            ``savedir``).
        overrides : dict or None
            Inference settings replacing the model's: ``window_seconds``,
            ``chunk_hop_seconds``, ``batch_size``, ``eval_crop_seconds``.
        savedir : str or Path or None
            Where the files of a Hub model are downloaded (default
            ``~/.cache/sser/<owner>--<name>``).
        revision : str or None
            Hub revision (branch, tag or commit) of a Hub model.
        download_only : bool
            Only download the files of a Hub model (returns None).
        trust_hparams : bool
            Build the folder's ``hyperparams.yaml`` with HyperPyYAML instead
            of reading ``sser_model.json``. This RUNS the code the YAML
            names: only for files you wrote yourself.
        hparams_file : str
            The YAML file read with ``trust_hparams=True``.
        quantize : str or None
            ``"int8"``: dynamic int8 quantization of the SSL encoder's linear
            layers for CPU inference (:func:`sser_lobes.encoders.quantize.
            quantize_int8`); a ``run_opts`` device other than a CPU is
            refused. ``None``: the fp32 model.
        asr_source : str or None
            A transformers ASR model (Hub id or folder) that transcribes
            utterances given without a transcript, for text-fused models.
            The model folder's own suggestion is never used by itself.
        **kwargs : dict
            Passed to the constructor, e.g. ``run_opts={"device": "cuda"}``.

        Returns
        -------
        EmotionRecognizer or None

        Raises
        ------
        sser_lobes.errors.ModelFormatError
            If the folder is not a valid sser model folder: one line naming
            the file and the problem.
        sser_lobes.errors.QuantizationError
            If ``quantize="int8"`` is asked for on a device other than a CPU.
        """
        if quantize not in QUANTIZE_CHOICES:
            raise ValueError(
                f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}."
            )
        if quantize == "int8":
            # CPU unless a device is named (not the accelerator that
            # SpeechBrain would pick by default); any other device is refused.
            run_opts = dict(kwargs.get("run_opts") or {})
            run_opts["device"] = run_opts.get("device") or "cpu"
            check_int8_device(run_opts["device"])
            kwargs["run_opts"] = run_opts
        local = Path(str(source)).expanduser().is_dir()
        if trust_hparams:
            files = (hparams_file, WEIGHTS_FILE)
            folder = model_folder(source, savedir, revision, files)
            if download_only:
                return None
            model, hparams = _from_trusted_yaml(folder / hparams_file, overrides)
        else:
            folder = model_folder(source, savedir, revision)
            description = _description(folder, overrides)
            if not local:  # the description is checked before the rest comes
                text = description["text_encoder"] or {"files": []}
                names = [f"{TEXT_ENCODER_FOLDER}/{n}" for n in text["files"]]
                model_folder(source, savedir, revision, (WEIGHTS_FILE, *names))
            if download_only:
                return None
            if description["text_encoder"] is not None:
                check_text_encoder(folder, description)
            weights = model_file(folder, WEIGHTS_FILE, "model.safetensors")
            try:
                model = load_model(description, weights)
            except (RuntimeError, SafetensorError) as error:
                summary = " ".join(str(error).split())
                raise ModelFormatError(
                    f"{weights}: cannot load the weights: {summary}"
                ) from None
            hparams = _hparams_of(description)
        hparams["folder"] = str(folder)
        hparams["asr_source"] = asr_source
        if quantize == "int8":
            model.eval()
            quantize_int8(model)
        return cls(modules={"model": model}, hparams=hparams, **kwargs)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = self.mods.model
        self.labels = list(self.hparams.labels)
        self.sample_rate = int(self.hparams.sample_rate)
        self.min_samples = self.model.encoder.min_samples
        self._text_embedder = None
        self._asr = None

    # ------------------------------------------------------------------ text
    @property
    def uses_text(self):
        """Whether the model fuses a transcript embedding."""
        return getattr(self.model, "text_fusion", None) is not None

    def _text_encoder_folder(self):
        """The model folder's ``text_encoder/``, checked again (it was checked
        at load; the folder may have changed since)."""
        description = getattr(self.hparams, "description", None)
        if description is None:  # a trusted hyperparams.yaml
            return Path(self.hparams.folder) / TEXT_ENCODER_FOLDER
        return check_text_encoder(self.hparams.folder, description)

    def _embed_texts(self, texts):
        if self._text_embedder is None:
            folder = self._text_encoder_folder()
            try:
                self._text_embedder = self._text_embedder_of(folder)
            except (OSError, ValueError) as error:
                summary = " ".join(str(error).split())
                raise ModelFormatError(f"{folder}: {summary}") from None
        return torch.as_tensor(self._text_embedder.embed(texts), dtype=torch.float32)

    def _text_embedder_of(self, folder):
        from sser_lobes.text.embedder import TextEmbedder

        return TextEmbedder(
            str(folder),
            max_length=self.hparams.text_max_length,
            normalize=self.hparams.text_normalize,
            device=str(self.device),
            safetensors_only=getattr(self.hparams, "description", None) is not None,
        )

    def transcribe(self, wavs, wav_lens=None):
        """Transcripts from the caller's ASR model (``asr_source``), or None."""
        source = getattr(self.hparams, "asr_source", None)
        if not source:
            return None
        if self._asr is None:
            from transformers import pipeline

            self._asr = pipeline("automatic-speech-recognition", model=source)
        lengths = _absolute(wav_lens, wavs.shape[1])
        return [
            self._asr(
                {
                    "raw": wav[:n].detach().cpu().numpy(),
                    "sampling_rate": self.sample_rate,
                }
            )["text"]
            for wav, n in zip(wavs, lengths.tolist())
        ]

    def _text_inputs(self, wavs, wav_lens, texts):
        if not self.uses_text:
            return {}
        batch = wavs.shape[0]
        texts = [None] * batch if texts is None else list(texts)
        if len(texts) != batch:
            raise ValueError(f"got {len(texts)} texts for {batch} waveforms.")
        # A missing transcript (None, not "") is the model's own business
        # for each utterance, whatever the others in the batch have: its ASR
        # if it has one, else the learned empty-text embedding.
        missing = [i for i, text in enumerate(texts) if text is None]
        if missing:
            transcripts = self.transcribe(wavs[missing], wav_lens[missing])
            for i, transcript in zip(missing, transcripts or []):
                texts[i] = transcript
        has_text = torch.tensor([bool(t and str(t).strip()) for t in texts])
        size = self.model.text_fusion.text_size
        embeddings = torch.zeros(batch, size)
        if has_text.any():
            given = [str(t) for t, h in zip(texts, has_text.tolist()) if h]
            embeddings[has_text] = self._embed_texts(given)
        return {
            "text": embeddings.to(self.device),
            "has_text": has_text.to(self.device),
        }

    # ------------------------------------------------------------- forward
    def forward(self, wavs, wav_lens=None, texts=None):
        """Model outputs for a padded batch (dict of tensors)."""
        return self.predict_batch(wavs, wav_lens, texts)

    def predict_batch(self, wavs, wav_lens=None, texts=None):
        """Run the model on a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` at the model's sample rate.
        wav_lens : torch.Tensor or None
            Relative lengths (SpeechBrain convention).
        texts : list of (str or None) or None
            Transcripts for text-fused models. A missing one (None, or
            ``texts=None`` for all) is transcribed by the configured ASR, or
            else gets the learned empty-text embedding; ``""`` is an empty
            transcript (the empty-text embedding).

        Returns
        -------
        dict
            ``probabilities`` ``[batch, classes]`` (categorical models) or
            ``attributes`` ``[batch, K]`` on the corpus scale (attribute
            models), plus ``gender_probabilities`` for gender-conditioned
            models.
        """
        wavs = wavs.to(self.device).float()
        if wavs.dim() == 1:
            wavs = wavs[None]
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        wav_lens = wav_lens.to(self.device)
        with torch.no_grad():
            inputs = self._text_inputs(wavs, wav_lens, texts)
            out = self.model(wavs, wav_lens, **inputs)
        result = {}
        outputs = out["logits"].float()
        if self.hparams.task == "categorical":
            result["probabilities"] = torch.softmax(outputs, dim=-1)
        else:
            low, high = self.hparams.attribute_range
            result["attributes"] = outputs * (high - low) + low
        if "gender_logits" in out:
            result["gender_probabilities"] = torch.softmax(
                out["gender_logits"].float(), dim=-1
            )
        return result

    def classify_batch(self, wavs, wav_lens=None, texts=None):
        """Classify a padded batch.

        Returns
        -------
        probabilities : torch.Tensor
            ``[batch, classes]``.
        score : torch.Tensor
            Probability of the predicted class ``[batch]``.
        index : torch.Tensor
            Predicted class index ``[batch]``.
        labels : list of str
            Predicted class names.
        """
        self._require_categorical()
        probabilities = self.predict_batch(wavs, wav_lens, texts)["probabilities"]
        score, index = probabilities.max(dim=-1)
        return probabilities, score, index, [self.labels[i] for i in index.tolist()]

    def classify_file(self, path, text=None, return_timeline=False, pooling="mean"):
        """Classify one audio file of any format, rate and channel count.

        Audio longer than ``window_seconds`` is cut into overlapping windows
        whose probabilities are pooled (``pooling``: ``mean`` weighted by
        chunk length, or ``max``).

        Returns
        -------
        ``(probabilities, score, index, label)`` for the file; with
        ``return_timeline=True`` a fifth item, the per-chunk timeline.
        """
        self._require_categorical()
        wav = self.load_audio(path)
        probabilities, bounds, chunk_probs = self._classify_waveform(wav, text)
        probabilities = pool_chunk_scores(chunk_probs, bounds, mode=pooling)
        score, index = probabilities.max(dim=-1)
        result = (probabilities, score, index, self.labels[int(index)])
        if return_timeline:
            result += (timeline(chunk_probs, bounds, self.sample_rate, self.labels),)
        return result

    def timeline(self, path, options=None, turns=None, **settings):
        """The emotion timeline of a recording of any length.

        The file is streamed from disk in blocks (constant memory), speech
        is found by a voice activity detector, each speech region is
        classified in windows (through :meth:`predict_batch`), and the
        smoothed window probabilities become segments of constant label,
        with silence between regions (:mod:`sser_lobes.inference.timeline`).

        Arguments
        ---------
        path : str or os.PathLike
            Any audio file (any rate, channels, length).
        options : sser_lobes.inference.timeline.TimelineOptions or None
            The settings; ``**settings`` change single fields, e.g.
            ``vad="energy"``, ``hop=1.5``, ``uncertain_below=0.4``.
        turns : list of (float, float, str) or None
            Speaker turns ``(start, end, speaker)``: one timeline per turn,
            each segment carrying its speaker.

        Returns
        -------
        sser_lobes.inference.timeline.Timeline
            ``.segments`` (start, end, label, probabilities, VAD confidence),
            ``.notes`` (e.g. no speech found), ``.summary()``.
        """
        from sser_lobes.inference.timeline import file_timeline, with_options

        self._require_categorical()
        options = with_options(options, **settings)
        return file_timeline(self, path, options, turns=turns)

    def stream(self, options=None, source_rate=None, **settings):
        """A live timeline: push samples, get segments as they are decided.

        ``stream = rec.stream(source_rate=48000)``; ``stream.push(block)``
        returns the segments decided so far (windows are classified as
        soon as they are known); ``stream.finish()`` the rest. The segments
        are the ones :meth:`timeline` gives for the same audio.

        Returns
        -------
        sser_lobes.inference.timeline.TimelineStream
        """
        from sser_lobes.inference.timeline import TimelineStream, with_options

        self._require_categorical()
        options = with_options(options, **settings)
        return TimelineStream(self, options, eager=True, source_rate=source_rate)

    def load_audio(self, path, start=None, end=None):
        """Read, downmix and resample a file, with clear errors naming it.

        ``start`` / ``end`` (seconds) select a segment of the file, read
        and converted as a whole file is
        (:func:`~sser_lobes.dataio.audio.load_audio_segment`). A model whose recipe
        evaluated only the first ``eval_crop_seconds`` of each utterance
        (the Odyssey 2024 baseline's 12 s) gets the same crop here, so that
        a file gets the recipe's prediction.
        """
        if start is None and end is None:
            wav = load_audio_any(
                path,
                sample_rate=self.sample_rate,
                min_samples=self.min_samples,
                silence_threshold=SILENCE_THRESHOLD,
            )
        else:
            wav = load_audio_segment(
                path,
                start,
                end,
                sample_rate=self.sample_rate,
                min_samples=self.min_samples,
                silence_threshold=SILENCE_THRESHOLD,
            )
        crop = self._crop_seconds()
        if crop:
            wav = wav[: int(round(crop * self.sample_rate))]
        return wav

    def _crop_seconds(self):
        return getattr(self.hparams, "eval_crop_seconds", None)

    def utterance(self, path, start=None, end=None, text=None, seconds=None):
        """An :class:`Utterance` of a file or of its segment ``[start, end)``.

        Arguments
        ---------
        path : str or os.PathLike
            Audio file (named in the result and in its errors).
        start, end : float or None
            Segment bounds in seconds (None: the whole file).
        text : str or None
            Transcript (text-fused models).
        seconds : float or None
            Duration, if known (e.g. from a corpus file); else read from the
            file's header.

        Returns
        -------
        Utterance
        """
        path = str(path)
        if seconds is None:
            seconds = _header_seconds(path, start, end)
        crop = self._crop_seconds()
        if crop:
            seconds = min(seconds, crop)
        load = functools.partial(self.load_audio, path, start, end)
        return Utterance(name=path, load=load, text=text, seconds=seconds)

    def _window(self):
        window = int(round(self.hparams.window_seconds * self.sample_rate))
        hop = int(round(self.hparams.chunk_hop_seconds * self.sample_rate))
        return window, hop

    def _classify_waveform(self, wav, text=None):
        window, hop = self._window()
        chunks, bounds = split_into_chunks(wav, window, hop)
        chunk_probs = []
        for start in range(0, len(chunks), self._eval_batch_size()):
            part = chunks[start : start + self._eval_batch_size()]
            wavs, lens = _pad(part)
            texts = None if text is None else [text] * len(part)
            chunk_probs.append(self.predict_batch(wavs, lens, texts)["probabilities"])
        chunk_probs = torch.cat(chunk_probs).cpu()
        return chunk_probs.mean(0), bounds, chunk_probs

    def _eval_batch_size(self):
        return int(getattr(self.hparams, "batch_size", 8))

    def predict_files(self, paths, batch_size=8, texts=None, progress=False):
        """Predict many files, batched by length; errors are per file.

        See :meth:`predict_utterances` (each file is one utterance).

        Returns
        -------
        list of dict
            In the order of ``paths``: ``{"file", "label", "score",
            "probabilities": {label: p}}`` (categorical),
            ``{"file", "attributes": {name: value}}`` (attributes), or
            ``{"file", "error"}``.
        """
        paths = [str(p) for p in paths]
        texts = list(texts) if texts is not None else [None] * len(paths)
        if len(texts) != len(paths):
            raise ValueError(f"got {len(texts)} texts for {len(paths)} files.")
        utterances = [self.utterance(p, text=t) for p, t in zip(paths, texts)]
        return self.predict_utterances(utterances, batch_size, progress)

    def predict_utterances(self, utterances, batch_size=8, progress=False):
        """Predict many utterances, batched by length; errors are per utterance.

        Utterances are sorted by their expected duration and run in batches
        of ``batch_size``; each batch's audio is read only when it runs (one
        batch in memory), and an utterance that cannot be read gets a result
        with ``"error"`` while the others go on. Padding never changes an
        utterance's output, so the result is the one it gets alone
        (:meth:`classify_file`); audio longer than the window is chunked and
        pooled as :meth:`classify_file` does.

        Arguments
        ---------
        utterances : list of Utterance
            E.g. from :meth:`utterance`.
        batch_size : int
            Utterances per forward pass.
        progress : bool
            Show a progress bar.

        Returns
        -------
        list of dict
            In the order of ``utterances``, as :meth:`predict_files` (the
            ``"file"`` key is the utterance's name); chunked ones also have
            ``"chunks"``.
        """
        from tqdm import tqdm

        utterances = list(utterances)
        order = sorted(
            range(len(utterances)), key=lambda i: utterances[i].seconds or 0.0
        )
        window, _ = self._window()
        results = [None] * len(utterances)
        bar = tqdm(total=len(utterances), disable=not progress, desc="utterances")
        for first in range(0, len(order), batch_size):
            group = order[first : first + batch_size]
            audio = {}
            for i in group:
                try:
                    audio[i] = utterances[i].load()
                except AudioError as error:
                    results[i] = {"file": utterances[i].name, "error": str(error)}
            short = [i for i in group if i in audio and len(audio[i]) <= window]
            if short:
                wavs, lens = _pad([audio[i] for i in short])
                texts = [utterances[i].text for i in short]
                outputs = self.predict_batch(wavs, lens, texts)
                for row, i in enumerate(short):
                    results[i] = self._result(utterances[i].name, outputs, row)
            for i in group:
                if i in audio and len(audio[i]) > window:
                    results[i] = self._long_result(utterances[i], audio[i])
            bar.update(len(group))
        bar.close()
        return results

    def _long_result(self, utterance, wav):
        """Result of audio longer than the window: chunks pooled."""
        if self.hparams.task != "categorical":
            return {"file": utterance.name, "error": "longer than the window"}
        _, bounds, chunk_probs = self._classify_waveform(wav, utterance.text)
        pooled = pool_chunk_scores(chunk_probs, bounds)
        result = self._result(utterance.name, {"probabilities": pooled[None]}, 0)
        result["chunks"] = len(bounds)
        return result

    def _result(self, path, outputs, row):
        return prediction_result(path, outputs, row, self.labels)

    def _require_categorical(self):
        if self.hparams.task != "categorical":
            raise ValueError(
                "this is an attribute model (arousal / valence / dominance): use "
                "predict_batch() or predict_files()."
            )


def _header_seconds(path, start=None, end=None):
    """Duration of a file or segment from its header (0.0 if unreadable:
    loading it will report why)."""
    try:
        duration = audio_info(path).duration
    except AudioError:
        return 0.0
    end = duration if end is None else min(end, duration)
    return max(0.0, end - (start or 0.0))


def _absolute(wav_lens, max_length):
    return torch.round(wav_lens.float().cpu() * max_length).long()


def _pad(waveforms):
    """Pad 1-D waveforms into ``[batch, max]`` with SpeechBrain relative lengths."""
    longest = max(len(w) for w in waveforms)
    batch = torch.zeros(len(waveforms), longest)
    for row, wav in enumerate(waveforms):
        batch[row, : len(wav)] = wav
    lens = torch.tensor([len(w) / longest for w in waveforms])
    return batch, lens


def _description(folder, overrides=None):
    """The checked description of a model folder; a folder exported before
    the data-only format gets one line saying what to do."""
    folder = Path(folder)
    if (
        not (folder / DESCRIPTION_FILE).exists()
        and not (folder / DESCRIPTION_FILE).is_symlink()
    ):
        if (folder / "hyperparams.yaml").is_file():
            raise ModelFormatError(
                f"{folder}: no {DESCRIPTION_FILE}: this model was exported by an "
                "older sser (hyperparams.yaml only). Re-export its run with "
                "`python -m sser_lobes.export RUN_FOLDER OUT_FOLDER`, or, if you "
                "wrote this folder yourself, load it with trust_hparams=True "
                "(sser-predict --trust-hparams), which runs the code its YAML names"
            )
        raise ModelFormatError(
            f"{folder}: no {DESCRIPTION_FILE}; it is not an exported sser model "
            "(write one with: python -m sser_lobes.export RUN_FOLDER OUT_FOLDER)"
        )
    data = read_description(folder)
    return validate_description(data, folder / DESCRIPTION_FILE, overrides)


def _hparams_of(description):
    """The recognizer's settings from a checked description."""
    text = description["text_encoder"] or {}
    return {
        "task": description["task"],
        "labels": list(description["labels"]),
        "sample_rate": description["sample_rate"],
        "window_seconds": description["window_seconds"],
        "chunk_hop_seconds": description["chunk_hop_seconds"],
        "eval_crop_seconds": description["eval_crop_seconds"],
        "batch_size": description["batch_size"],
        "attribute_range": tuple(description["attribute_range"]),
        "text_encoder_files": list(text.get("files", [])),
        "text_max_length": text.get("max_length"),
        "text_normalize": text.get("normalize"),
        "description": description,
    }


def _from_trusted_yaml(path, overrides=None):
    """The model and settings of a ``hyperparams.yaml`` built by HyperPyYAML
    (``trust_hparams=True``: this runs whatever the file names)."""
    from hyperpyyaml import load_hyperpyyaml

    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    with open(path, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides or {})
    model = (hparams.get("modules") or {}).get("model")
    if not isinstance(model, torch.nn.Module):
        raise ModelFormatError(f"{path}: needs modules: {{model: ...}}")
    weights = path.parent / WEIGHTS_FILE
    try:
        load_safetensors_state(model, weights)
    except (RuntimeError, OSError, SafetensorError) as error:
        summary = " ".join(str(error).split())
        raise ModelFormatError(
            f"{weights}: cannot load the weights: {summary}"
        ) from None
    labels = list(hparams.get("labels") or [])
    outputs = getattr(getattr(model, "head", None), "n_outputs", len(labels))
    if len(labels) != outputs:
        raise ModelFormatError(
            f"{path}: labels names {len(labels)} classes, the head has {outputs} "
            "outputs"
        )
    settings = dict(hparams)
    settings |= {
        key: hparams.get(key, default)
        for key, default in (
            ("task", "categorical"),
            ("sample_rate", 16000),
            ("window_seconds", 10.0),
            ("chunk_hop_seconds", 5.0),
            ("eval_crop_seconds", None),
            ("batch_size", 8),
            ("attribute_range", (1.0, 7.0)),
            ("text_encoder_files", []),
            ("text_max_length", None),
            ("text_normalize", None),
        )
    }
    settings["labels"] = labels
    return model.eval(), settings
