"""Transcripts for utterances that have none, from an ASR model.

MSP-Podcast's Test3 ships no transcripts; a text-fused model needs one per
utterance. :func:`transcribe_missing` runs a transformers
``automatic-speech-recognition`` pipeline on the utterances of the manifests
whose ``"text"`` is missing and caches the transcripts in a JSON file, so a
rerun transcribes nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from sser_lobes.dataio.files import atomic_write_json
from sser_lobes.encoders.hf_utils import quiet_transformers
from sser_lobes.text.cache import _has_text, _read_manifests

logger = logging.getLogger(__name__)


def _read_transcript_cache(cache_file):
    cache_file = Path(cache_file)
    if not cache_file.is_file():
        return {}
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(
            f"{cache_file}: not a valid transcript cache ({error}); delete it to "
            "transcribe again."
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(
            f"{cache_file}: a transcript cache is a JSON object {{id: text}}; "
            "delete it to transcribe again."
        )
    return data


def transcribe_missing(
    manifest_paths,
    asr_source,
    cache_file,
    batch_size=8,
    device="cpu",
    sample_rate=16000,
):
    """Transcribe the utterances whose manifest ``"text"`` is null or empty.

    Runs a transformers ``automatic-speech-recognition`` pipeline (wav2vec2
    CTC, Whisper...) on their ``"wav"``, loaded only if some utterance is not
    transcribed yet. Transcripts are stored in ``cache_file`` (JSON
    ``{id: text}``, rewritten atomically after every few batches, so an
    interrupted run resumes) and never recomputed. The manifests are only
    read: merge the returned texts yourself, e.g. with
    ``embed_manifest_texts(..., extra_texts=texts)``. The cache file does not
    record the ASR model: use one file per model.

    Arguments
    ---------
    manifest_paths : str, os.PathLike or list of them
        JSON manifests ``{id: {"wav": path, "text": str or null, ...}}``.
    asr_source : str or os.PathLike
        Hub id or local folder of the ASR model (e.g. ``openai/whisper-small``,
        or :func:`tiny_asr_model` in tests).
    cache_file : str or os.PathLike
        JSON file of the transcripts (created if needed).
    batch_size : int
        Utterances per pipeline batch.
    device : str
        Where the ASR model runs (``"cpu"``, ``"cuda:0"``).
    sample_rate : int
        Expected sampling rate of the audio files (checked).

    Returns
    -------
    dict
        ``{id: transcript}`` for every utterance of the manifests without text.
    """
    need = {}
    for utt, (path, entry) in _read_manifests(manifest_paths).items():
        if _has_text(entry.get("text")):
            continue
        if not isinstance(entry.get("wav"), str):
            raise ValueError(f'{path}: utterance {utt}: no "wav" path to transcribe')
        need[utt] = (path, entry["wav"])
    cache_file = Path(cache_file)
    transcripts = _read_transcript_cache(cache_file)
    todo = [utt for utt in need if utt not in transcripts]
    if todo:
        from sser_lobes.dataio.audio import read_audio
        from sser_lobes.errors import AudioError

        logger.info("Transcribing %d utterance(s) with %s", len(todo), asr_source)
        asr = _asr_pipeline(asr_source, device)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        chunk = max(1, int(batch_size)) * 8
        starts = range(0, len(todo), chunk)
        if len(todo) > chunk:
            from tqdm import tqdm

            starts = tqdm(starts, desc="transcribing", unit="chunk")
        for start in starts:
            ids = todo[start : start + chunk]
            inputs = []
            for utt in ids:
                path, wav = need[utt]
                try:
                    audio = read_audio(wav, sample_rate=sample_rate)
                except AudioError as error:
                    raise AudioError(
                        error.path, f"{error.problem} (utterance {utt} of {path})"
                    ) from None
                inputs.append({"raw": audio.numpy(), "sampling_rate": sample_rate})
            with quiet_transformers():
                outputs = asr(inputs, batch_size=int(batch_size))
            for utt, output in zip(ids, outputs):
                transcripts[utt] = output["text"].strip()
            atomic_write_json(cache_file, transcripts)
    return {utt: transcripts[utt] for utt in need}


def _asr_pipeline(asr_source, device):
    from transformers import pipeline

    with quiet_transformers():
        return pipeline(
            "automatic-speech-recognition", model=os.fspath(asr_source), device=device
        )
