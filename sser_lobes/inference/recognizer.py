"""One-line inference with a trained sser model, from a folder or the Hub.

    from sser_lobes.inference.recognizer import EmotionRecognizer
    rec = EmotionRecognizer.from_hparams("sser/wavlm-large-iemocap")
    probabilities, score, index, label = rec.classify_file("speech.wav")

The model folder is what ``python -m sser_lobes.export`` writes:
``hyperparams.yaml`` (architecture, labels, SSL config inline),
``model.safetensors`` (the whole EmotionModel, SSL encoder included, so there
is no second download) and ``label_encoder.txt``.

Loading runs nothing the source chose. The interface is code of this
installed package (no ``custom.py`` is fetched or imported, unlike
``foreign_class`` interfaces); ``hyperparams.yaml`` is parsed without
building anything and refused unless every constructor it names is one that
:mod:`sser_lobes.inference.export` writes (:mod:`sser_lobes.inference.safe_hparams`);
the weights
are read only from ``model.safetensors`` (tensors, no pickle), whatever the
file's pretrainer section says. ``trust_hparams=True`` skips the check and so
runs whatever the YAML names: only for your own hand-written files. Not
covered: a text-fused model's ``asr_source`` (a transformers model named in
the YAML) is downloaded when a transcript is first needed, and its files are
then read by transformers (without remote code).

Same numbers as the recipes: the forward pass is the recipes'
:class:`sser_lobes.EmotionModel`, audio is read the same way, and padding
never changes an utterance's output, so a file gets the same prediction alone
or in a batch. Any input a user has is accepted (any sample rate, stereo,
wav / flac / ogg); audio longer than the model's window is classified in
overlapping chunks whose probabilities are pooled (``return_timeline`` gives
the per-chunk results). Gender-conditioned models predict the gender
themselves; text-fused models take an optional transcript, or use the
configured ASR model, or fall back to their learned empty-text embedding.
"""

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.fetching import FetchConfig, LocalStrategy, fetch

from sser_lobes.dataio.audio import audio_info, load_audio_any, load_audio_segment
from sser_lobes.dataio.chunking import pool_chunk_scores, split_into_chunks, timeline
from sser_lobes.encoders.quantize import (
    QUANTIZE_CHOICES,
    check_int8_device,
    quantize_int8,
)
from sser_lobes.errors import AudioError, UnsafeHparamsError
from sser_lobes.inference.safe_hparams import load_checked_hparams

logger = logging.getLogger(__name__)

#: The only file the weights of an exported model are read from.
WEIGHTS_FILE = "model.safetensors"

#: Peak amplitude under which audio is refused as silent (the default of
#: :func:`sser_lobes.dataio.audio.load_audio_any`; segments get the same check).
SILENCE_THRESHOLD = 1e-4


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
        missing transcript, its ASR or its learned empty-text embedding).
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
    """Pretrainer hook: load a safetensors state dict into ``module`` (strict).

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
    state = load_file(str(path), device="cpu")
    module.load_state_dict(state, strict=True)


class EmotionRecognizer(Pretrained):
    """Speech emotion recognition with an exported sser model.

    Load with ``EmotionRecognizer.from_hparams(source=FOLDER_OR_REPO_ID,
    savedir=...)`` (checked loading, see :meth:`from_hparams`);
    ``run_opts={"device": "cuda"}`` picks the device; ``quantize="int8"``
    runs the SSL encoder's linear layers in int8 on the CPU
    (:mod:`sser_lobes.encoders.quantize`).

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
        hparams_file="hyperparams.yaml",
        overrides=None,
        overrides_must_match=True,
        savedir=None,
        download_only=False,
        local_strategy=None,
        fetch_config=None,
        trust_hparams=False,
        quantize=None,
        **kwargs,
    ):
        """Load from a local folder or a Hub repository id.

        Unlike SpeechBrain's ``Pretrained.from_hparams``, no code chosen by
        the source runs: ``hyperparams.yaml`` is checked against the
        constructors :mod:`sser_lobes.inference.export` writes
        (:mod:`sser_lobes.inference.safe_hparams`) before anything in it is built, the
        weights are read only from ``model.safetensors`` (whatever the
        file's pretrainer says), and no ``custom.py`` is fetched or imported.

        Arguments
        ---------
        source : str or Path
            An exported model folder (read in place: nothing is written
            there) or a Hub repository id (collected in ``savedir``, by
            default ``~/.cache/sser/<owner>--<name>``).
        hparams_file : str
            The hyperparameter file of the source.
        overrides : dict or None
            Values replacing the file's, e.g. ``{"window_seconds": 4.0}``.
        overrides_must_match : bool
            Whether every override must name a key of the file.
        savedir : str or Path or None
            Where the files of a Hub model are collected.
        download_only : bool
            Only fetch ``hyperparams.yaml`` and ``model.safetensors``
            (returns None).
        local_strategy : speechbrain.utils.fetching.LocalStrategy or None
            How fetched files are linked into ``savedir`` (default: symlinks
            for Hub models; local folders are never linked).
        fetch_config : speechbrain.utils.fetching.FetchConfig or None
            Hub options (revision, token, network).
        trust_hparams : bool
            Skip the check of ``hyperparams.yaml``: this runs code named in
            the YAML, only for your own hand-written files.
        quantize : str or None
            ``"int8"``: dynamic int8 quantization of the SSL encoder's linear
            layers for CPU inference
            (:func:`sser_lobes.encoders.quantize.quantize_int8`). It runs on the CPU
            (the default device then, whatever accelerator the machine has);
            a ``run_opts`` device other than a CPU is refused with a
            one-line error. ``None``: the fp32 model.
        **kwargs : dict
            Passed to the constructor, e.g. ``run_opts={"device": "cuda"}``.

        Returns
        -------
        EmotionRecognizer or None

        Raises
        ------
        sser_lobes.errors.UnsafeHparamsError
            If the file names anything an exported model does not use; the
            message names the file, line and tag.
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
        overrides = dict(overrides or {})
        # The source is remembered so that optional files (the text encoder
        # of text-fused models) are fetched from it only when first needed.
        overrides.setdefault("source", str(source))
        local = Path(str(source)).expanduser()
        if not local.is_dir() and str(source).startswith(("/", ".", "~")):
            raise FileNotFoundError(f"{source}: no such model folder")
        if local.is_dir() and not (local / hparams_file).is_file():
            raise FileNotFoundError(
                f"{source}: no {hparams_file} in this folder; it is not an exported "
                "sser model (write one with: python -m sser_lobes.export RUN_FOLDER "
                "OUT_FOLDER)"
            )
        if local.is_dir():
            # A local folder is read in place: nothing is linked or written there.
            savedir = local if savedir is None else savedir
            local_strategy = local_strategy or LocalStrategy.NO_LINK
        elif savedir is None:
            # A Hub model is collected in a per-repository folder of the cache.
            savedir = Path.home() / ".cache" / "sser" / str(source).replace("/", "--")
        fetch_kwargs = {
            "source": source,
            "savedir": savedir,
            "local_strategy": local_strategy or LocalStrategy.SYMLINK,
            "fetch_config": fetch_config or FetchConfig(),
        }
        hparams_path = fetch(filename=hparams_file, **fetch_kwargs)
        if download_only:
            fetch(filename=WEIGHTS_FILE, **fetch_kwargs)
            return None
        hparams = load_checked_hparams(
            hparams_path, overrides, overrides_must_match, trust_hparams
        )
        modules = hparams.get("modules")
        if not isinstance(modules, dict) or not isinstance(
            modules.get("model"), torch.nn.Module
        ):
            raise ValueError(f"{hparams_path}: needs modules: {{model: ...}}.")
        _check_text_encoder_files(hparams, hparams_path)
        weights_path = fetch(filename=WEIGHTS_FILE, **fetch_kwargs)
        try:
            load_safetensors_state(modules["model"], weights_path)
        except (RuntimeError, OSError, SafetensorError) as error:
            summary = " ".join(str(error).split())
            raise ValueError(
                f"{weights_path}: cannot load the weights of the model of "
                f"{hparams_path}: {summary}"
            ) from None
        if quantize == "int8":
            modules["model"].eval()
            quantize_int8(modules["model"])
        hparams["savedir"] = savedir
        return cls(modules=modules, hparams=hparams, **kwargs)

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
        files = list(getattr(self.hparams, "text_encoder_files", []) or [])
        source = getattr(self.hparams, "source", None)
        savedir = getattr(self.hparams, "savedir", None)
        folder = None
        for name in files:
            path = fetch(
                filename=f"text_encoder/{name}",
                source=source,
                savedir=None if savedir is None else Path(savedir) / "text_encoder",
                save_filename=name,
            )
            folder = Path(path).parent
        return folder

    def _embed_texts(self, texts):
        from sser_lobes.text.embedder import TextEmbedder

        if self._text_embedder is None:
            folder = self._text_encoder_folder()
            if folder is None:
                raise ValueError("this model has no text encoder files.")
            self._text_embedder = TextEmbedder(
                str(folder),
                max_length=self.hparams.text_max_length,
                normalize=self.hparams.text_normalize,
                device=str(self.device),
            )
        return torch.as_tensor(self._text_embedder.embed(texts), dtype=torch.float32)

    def transcribe(self, wavs, wav_lens=None):
        """Transcripts from the model's configured ASR (``asr_source``)."""
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


def _check_text_encoder_files(hparams, hparams_path):
    """Text encoder files are fetched into ``savedir/text_encoder``: their
    names must stay inside it."""
    for name in hparams.get("text_encoder_files") or []:
        parts = Path(str(name)).parts
        if (
            not parts
            or Path(str(name)).is_absolute()
            or ".." in parts
            or "\\" in str(name)
        ):
            raise UnsafeHparamsError(
                f"{hparams_path}: text_encoder_files entry {name!r} is not a "
                "file name inside text_encoder/."
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
