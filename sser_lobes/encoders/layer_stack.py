"""The transformer of wav2vec 2.0 / HuBERT / WavLM, run in parts.

transformers runs a model's transformer in one call: the CNN features, their
projection, the encoder's preamble (padded frames zeroed, the convolutional
position embedding, the layer norm of post-norm models, dropout), every
layer, and the final layer norm of stable-layer-norm models. Top-k
fine-tuning (:class:`~sser_lobes.encoders.ssl_encoder.SSLEncoder` with
``trainable_layers``) needs the same computation cut in two at a layer
boundary: the frozen part below it once (or read from a feature cache), the
trained layers above it at every step. The functions here are transformers'
encoder loop, split:

* :func:`transformer_input`: waveforms to ``hidden_states[0]``, the input of
  the first layer;
* :func:`run_layers`: layers ``start`` to ``stop`` on a hidden state, with
  the attention mask each model kind expects and, for WavLM, the relative
  position bias (computed from the length by the first layer's embedding, as
  transformers' first layer computes it);
* :func:`final_norm`: the encoder's layer norm after the last layer of
  stable-layer-norm models (post-norm models normalise the input instead).

``tests/test_top_layers.py`` checks the composition against stock
transformers (outputs and gradients) for the four kinds of checkpoints.
The fast modules of :mod:`sser_lobes.encoders.fast_path` are called as they
are inside transformers' loop: they read the batch from the running call's
state (:data:`~sser_lobes.encoders.fast_path.call_state.CURRENT_CALL`).
"""

import torch
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.wavlm.modeling_wavlm import WavLMEncoderLayer

from sser_lobes.encoders.fast_path.attention import FastWavLMAttention


def transformer_input(model, wavs, frame_mask):
    """``hidden_states[0]`` of a transformers model: the input of its first
    transformer layer.

    Arguments
    ---------
    model : transformers.Wav2Vec2Model, HubertModel or WavLMModel
    wavs : torch.Tensor
        ``[batch, samples]`` normalised, zero-padded waveforms.
    frame_mask : torch.Tensor
        Bool ``[batch, frames]``, True on valid frames (the CNN's output
        frames of each row's valid samples).

    Returns
    -------
    torch.Tensor
        ``[batch, frames, hidden_size]``: the projected CNN features, padded
        frames zeroed, plus the position embedding; layer-normalised on
        post-norm models; after the encoder's dropout. No SpecAugment mask
        (the frozen part of top-k fine-tuning runs in eval mode).

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoModel
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> model = AutoModel.from_pretrained(make_tiny_ssl(tempfile.mkdtemp())).eval()
    >>> wavs = torch.randn(1, 16000)
    >>> mask = torch.ones(1, 49, dtype=torch.bool)
    >>> first = transformer_input(model, wavs, mask)
    >>> stock = model(wavs, output_hidden_states=True).hidden_states[0]
    >>> torch.allclose(first, stock, atol=1e-5)
    True
    """
    features = model.feature_extractor(wavs).transpose(1, 2)
    projected = model.feature_projection(features)
    if isinstance(projected, tuple):  # wav2vec 2.0 and WavLM also return the norm
        projected = projected[0]
    encoder = model.encoder
    hidden = projected * frame_mask[:, :, None].to(projected.dtype)
    hidden = hidden + encoder.pos_conv_embed(hidden)
    if not model.config.do_stable_layer_norm:
        hidden = encoder.layer_norm(hidden)
    return encoder.dropout(hidden)


def run_layers(model, hidden, frame_mask, start, stop):
    """Transformer layers ``start`` to ``stop - 1`` (0-based) on ``hidden``.

    As transformers' encoder loop runs them: the same attention mask (WavLM's
    padding mask, or the bidirectional mask of wav2vec 2.0 / HuBERT),
    layerdrop in training (each layer skipped with probability
    ``config.layerdrop``; WavLM never skips its first), and for WavLM the
    relative position bias that its first layer computes from the length
    (recomputed here when ``start > 0``: it depends only on the length and on
    the first layer's frozen embedding).

    Arguments
    ---------
    model : transformers.Wav2Vec2Model, HubertModel or WavLMModel
    hidden : torch.Tensor
        ``[batch, frames, hidden_size]``: ``hidden_states[start]``.
    frame_mask : torch.Tensor
        Bool ``[batch, frames]``, True on valid frames.
    start, stop : int
        The layers, ``0 <= start <= stop <= num_hidden_layers``.

    Returns
    -------
    list of torch.Tensor
        ``hidden_states[start + 1]`` to ``hidden_states[stop]``: the output
        of each layer (a skipped layer repeats its input).

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoModel
    >>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
    >>> folder = make_tiny_ssl(tempfile.mkdtemp(), arch="hubert")
    >>> model = AutoModel.from_pretrained(folder).eval()
    >>> wavs, mask = torch.randn(1, 16000), torch.ones(1, 49, dtype=torch.bool)
    >>> stock = model(wavs, output_hidden_states=True).hidden_states
    >>> top = run_layers(model, stock[1], mask, 1, 2)  # the second layer alone
    >>> torch.allclose(top[0], stock[2], atol=1e-5)
    True
    """
    encoder, config = model.encoder, model.config
    wavlm = config.model_type == "wavlm"
    if wavlm:
        attention_mask = frame_mask
        position_bias = None
        if start > 0:
            position_bias = _position_bias(encoder, hidden.shape[0], hidden.shape[1])
    else:
        attention_mask = create_bidirectional_mask(
            config=config, inputs_embeds=hidden, attention_mask=frame_mask
        )
    outputs = []
    for index in range(start, stop):
        layer = encoder.layers[index]
        skippable = index > 0 or not wavlm
        if layer.training and skippable and config.layerdrop > 0.0:
            if torch.rand([]) < config.layerdrop:
                outputs.append(hidden)
                continue
        if wavlm:
            extra = {"index": index} if isinstance(layer, WavLMEncoderLayer) else {}
            hidden, position_bias = layer(
                hidden,
                attention_mask=attention_mask,
                position_bias=position_bias,
                **extra,
            )
        else:
            hidden = layer(hidden, attention_mask=attention_mask)
        outputs.append(hidden)
    return outputs


def _position_bias(encoder, batch, length):
    """WavLM's relative position bias for ``length`` frames, from the first
    layer's embedding: ``[1, heads, time, time]`` for sser's attention
    (shared by the batch), transformers' ``[batch * heads, time, time]`` for
    the stock one."""
    first = encoder.layers[0].attention
    bias = first.compute_bias(length, length)
    if isinstance(encoder.layers[-1].attention, FastWavLMAttention):
        return bias[None]
    heads = first.num_heads
    return bias[None].expand(batch, heads, length, length).reshape(-1, length, length)


def final_norm(model, hidden):
    """The encoder's output for the last layer's ``hidden``: the final layer
    norm of stable-layer-norm models, ``hidden`` itself on post-norm ones."""
    if model.config.do_stable_layer_norm:
        return model.encoder.layer_norm(hidden)
    return hidden
