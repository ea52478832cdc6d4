"""The faster CPU path of :class:`sser_lobes.SSLEncoder`: modules that
subclass transformers internals.

In eval mode (inference, validation, and the frozen CNN of partial
fine-tuning) :class:`~sser_lobes.SSLEncoder` computes the same function as
stock transformers, with the same parameters and state-dict keys, faster on
CPU. It switches the class of the model's modules to the ones here
(:data:`~sser_lobes.encoders.fast_path.registry.FAST_MODULES`):

* the CNN runs on each utterance's valid samples alone, time-major, in
  cache-sized chunks, with the first-layer group norm folded into its
  convolution (:mod:`~sser_lobes.encoders.fast_path.feature_encoder`): no
  padding is computed and no masking is needed;
* the feed-forward blocks skip padded frames
  (:mod:`~sser_lobes.encoders.fast_path.feed_forward`);
* WavLM's attention uses ``scaled_dot_product_attention`` on contiguous
  projections in eval mode, and in CPU training runs in cache-sized blocks
  (:mod:`~sser_lobes.encoders.fast_path.attention`,
  :mod:`~sser_lobes.encoders.fast_path.blocked_attention`); the position
  convolution runs channels-last
  (:mod:`~sser_lobes.encoders.fast_path.positional_conv`);
* the dropouts draw their CPU training masks about 9x faster than torch's
  ``bernoulli_`` (:mod:`~sser_lobes.encoders.fast_path.cpu_dropout`);
* the first-layer group norm of wav2vec2-base / HuBERT-base style models is
  masked to the valid frames when the CNN trains
  (:mod:`~sser_lobes.encoders.fast_path.group_norm`).

The lengths of the batch that these modules need are the state of one
:meth:`SSLEncoder.forward` call, held in a context variable
(:mod:`~sser_lobes.encoders.fast_path.call_state`) and not on the shared
modules: one encoder can serve several threads at once, each call seeing only
its own batch.

Checked against transformers 5.16.0 and 5.23.0
(:func:`~sser_lobes.encoders.fast_path.registry.check_transformers_version`);
the equality tests against stock transformers, for the four kinds of
checkpoints (WavLM, wav2vec 2.0 with layer and group norm, HuBERT), are in
``tests/test_ssl_fast_path.py``. The transformers internals used:
``WavLMAttention.forward(hidden_states, attention_mask, position_bias,
index)``, ``torch_multi_head_self_attention``, ``compute_bias``,
``gru_rel_pos_linear`` / ``gru_rel_pos_const``; the positional conv
embeddings' ``conv`` / ``padding`` / ``activation``; the feed-forward blocks'
``intermediate_dense`` / ``intermediate_act_fn`` / ``output_dense``; the
feature encoders' ``conv_layers[i].conv`` / ``.layer_norm`` / ``.activation``.

May import: :mod:`sser_lobes.errors`, torch and transformers; it is part of
:mod:`sser_lobes.encoders`.
"""
