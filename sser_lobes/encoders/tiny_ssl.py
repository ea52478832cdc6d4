"""Tiny random self-supervised speech models for tests, demos and smoke runs.

``python -m sser_lobes.tiny_ssl --arch wavlm --out DIR`` writes a HuggingFace
model folder (``config.json``, ``model.safetensors``,
``preprocessor_config.json``) with the architecture of a real checkpoint but a
hidden size of 32 and 2 transformer layers. :class:`sser_lobes.SSLEncoder`
loads it exactly like ``microsoft/wavlm-large``, so tests exercise the same
code path as real runs, with no download.

The CNN feature encoder keeps the real kernel sizes and strides (a frame every
320 samples, 25 ms receptive field), so durations, frame counts and batching
behave as with the full-size models.
"""

import argparse
import sys
from pathlib import Path

import torch
from transformers import (
    AutoModel,
    HubertConfig,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    WavLMConfig,
)

from sser_lobes.encoders.hf_utils import quiet_transformers

ARCHITECTURES = {
    "wavlm": WavLMConfig,
    "hubert": HubertConfig,
    "wav2vec2": Wav2Vec2Config,
}

# Which first-conv normalisation each architecture uses in its most used
# checkpoint: wavlm-large is a layer-norm model, hubert-base and wav2vec2-base
# are group-norm models.
DEFAULT_FEAT_EXTRACT_NORM = {"wavlm": "layer", "hubert": "group", "wav2vec2": "group"}


def tiny_ssl_config(
    arch="wavlm", feat_extract_norm=None, hidden_size=32, num_layers=2, **overrides
):
    """Return the transformers config of a tiny model of the given architecture.

    Arguments
    ---------
    arch : str
        ``"wavlm"``, ``"hubert"`` or ``"wav2vec2"``.
    feat_extract_norm : str or None
        ``"layer"`` (wavlm-large, wav2vec2-large-lv60 style, stable layer norm)
        or ``"group"`` (wav2vec2-base, hubert-base style). ``None`` takes the
        usual choice for the architecture.
    hidden_size : int
        Transformer width (also the CNN channel count).
    num_layers : int
        Number of transformer layers.
    **overrides
        Other config entries (e.g. ``conv_bias=True``).

    Returns
    -------
    transformers.PretrainedConfig

    Example
    -------
    >>> config = tiny_ssl_config("hubert", "group")
    >>> config.model_type, config.hidden_size, config.num_hidden_layers
    ('hubert', 32, 2)
    """
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}."
        )
    norm = feat_extract_norm or DEFAULT_FEAT_EXTRACT_NORM[arch]
    if norm not in ("layer", "group"):
        raise ValueError(f"feat_extract_norm must be 'layer' or 'group', got {norm!r}.")
    settings = dict(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=(hidden_size,) * 7,
        feat_extract_norm=norm,
        do_stable_layer_norm=norm == "layer",
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        vocab_size=8,
    )
    settings.update(overrides)
    return ARCHITECTURES[arch](**settings)


def make_tiny_ssl(out_dir, arch="wavlm", feat_extract_norm=None, seed=0, **kwargs):
    """Write a tiny random model folder that loads like a hub checkpoint.

    Arguments
    ---------
    out_dir : str or Path
        Folder to write (created if needed). Existing model files are not
        overwritten: a folder that already holds a ``config.json`` is an error.
    arch : str
        ``"wavlm"``, ``"hubert"`` or ``"wav2vec2"``.
    feat_extract_norm : str or None
        ``"layer"`` or ``"group"``, see :func:`tiny_ssl_config`.
    seed : int
        Seed of the random weights: the same seed gives the same model.
    **kwargs
        Passed to :func:`tiny_ssl_config` (``hidden_size``, ``num_layers``).

    Returns
    -------
    pathlib.Path
        The model folder.

    Example
    -------
    >>> import tempfile, os
    >>> folder = make_tiny_ssl(tempfile.mkdtemp() + "/tiny", arch="wav2vec2")
    >>> sorted(os.listdir(folder))
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        raise FileExistsError(
            f"{out_dir} already holds a model (config.json); choose another folder."
        )
    config = tiny_ssl_config(arch, feat_extract_norm, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModel.from_config(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(out_dir, safe_serialization=True)
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=config.feat_extract_norm == "layer",
    )
    feature_extractor.save_pretrained(out_dir)
    return out_dir


def main(argv=None):
    """Command line: ``python -m sser_lobes.tiny_ssl --arch wavlm --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="wavlm")
    parser.add_argument(
        "--feat-extract-norm",
        choices=["layer", "group"],
        default=None,
        help="first-conv normalisation (default: layer for wavlm, group otherwise)",
    )
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output model folder")
    args = parser.parse_args(argv)
    try:
        folder = make_tiny_ssl(
            args.out,
            arch=args.arch,
            feat_extract_norm=args.feat_extract_norm,
            seed=args.seed,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
        )
    except (FileExistsError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
