"""The self-supervised speech encoders: wav2vec 2.0, HuBERT and WavLM.

Owns :class:`~sser_lobes.encoders.ssl_encoder.SSLEncoder` (the batch-invariant
wrapper around a transformers model, with frozen / partial / entire / top-k /
LoRA fine-tuning), its faster CPU path (:mod:`sser_lobes.encoders.fast_path`),
the transformer run in two parts around trained top layers
(:mod:`~sser_lobes.encoders.layer_stack`), LoRA adapters through peft
(:mod:`~sser_lobes.encoders.lora`),
gradient checkpointing, int8 quantisation, the tiny random models the tests
and the demo build, the CPU thread count the recipes and ``sser-predict``
run with (:mod:`sser_lobes.encoders.threads`), and the small helpers around
transformers.

May import: :mod:`sser_lobes.errors` only. Nothing here knows about emotions,
corpora or recipes.
"""
