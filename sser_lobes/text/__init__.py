"""Transcripts for text-conditioned models: embedded once, cached, or
transcribed.

* :mod:`~sser_lobes.text.embedder`: :class:`TextEmbedder` (a frozen
  transformers text encoder, mean pooling over tokens) and the key that names
  an encoder and its options (:func:`text_encoder_key`);
* :mod:`~sser_lobes.text.cache`: the on-disk embedding cache and
  :func:`embed_manifest_texts`, which embeds the ``"text"`` of SpeechBrain
  JSON manifests, loading the encoder only if something is not cached yet;
* :mod:`~sser_lobes.text.asr`: transcripts for utterances that have none
  (MSP-Podcast Test3), from a transformers ASR pipeline, cached;
* :mod:`~sser_lobes.text.tiny`: tiny random text and ASR models with real
  tokenizers, for tests and demos (nothing is downloaded).

May import: :mod:`sser_lobes.errors`, :mod:`sser_lobes.encoders`,
:mod:`sser_lobes.dataio`.
"""
