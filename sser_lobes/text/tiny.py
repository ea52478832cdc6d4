"""Tiny random text and ASR models with real tokenizers, for tests and demos.

:func:`tiny_text_encoder` writes a 2-layer BERT with a WordPiece vocabulary
of common English words; :func:`tiny_asr_model` a tiny wav2vec 2.0 CTC model
with its character tokenizer. Nothing is downloaded; the outputs are random.

Example
-------
>>> import tempfile, pathlib
>>> folder = tiny_text_encoder(tempfile.mkdtemp() + "/bert")
>>> sorted(p.name for p in pathlib.Path(folder).glob("*.json"))[:1]
['config.json']
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from sser_lobes.encoders.hf_utils import quiet_transformers

_COMMON_WORDS = """
the be to of and a in that have i it for not on with he as you do at this but
his by from they we say her she or an will my one all would there their what
so up out if about who get which go me when make can like time no just him know
take people into year your good some could them see other than then now look
only come its over think also back after use two how our work first well way
even new want because any these give day most us is are was were been has had
am yes oh okay yeah really very much more sorry please thank thanks hello hi
hey love hate happy sad angry afraid fear surprise surprised disgust tired fine
great bad terrible wonderful nice why where here home never always again tell
said going let feel felt talk mean right left long little life man woman friend
money job school car house night morning today tomorrow yesterday leave stay
alone together sure maybe excuse wait stop listen don't can't i'm it's that's
""".split()


def tiny_text_encoder(out_dir, seed=0):
    """Write a tiny random BERT text encoder with a real WordPiece tokenizer.

    Hidden size 32, 2 layers, a vocabulary of a few hundred tokens (special
    tokens, letters, digits, punctuation, ``##`` letter pieces and common
    English words, lower-cased), so any English text tokenizes. It loads
    offline with ``AutoTokenizer`` / ``AutoModel`` like a hub checkpoint;
    the embeddings are random (not semantic): for tests and demos.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Folder to write; an existing model (``config.json``) is an error.
    seed : int
        Seed of the random weights (the same seed gives the same model).

    Returns
    -------
    pathlib.Path
        The model folder.

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoTokenizer
    >>> folder = tiny_text_encoder(tempfile.mkdtemp() + "/bert")
    >>> AutoTokenizer.from_pretrained(folder).tokenize("Hello, Zyx!")
    ['hello', ',', 'z', '##y', '##x', '!']
    """
    from transformers import BertConfig, BertModel, BertTokenizer

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        raise FileExistsError(
            f"{out_dir} already holds a model (config.json); choose another folder."
        )
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    punctuation = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += letters + list("0123456789") + punctuation
    vocab += ["##" + c for c in letters + list("0123456789")]
    vocab += ["##s", "##ed", "##ing", "##ly", "##er"]
    # Contractions are split on "'" by the basic tokenizer: keep whole words.
    vocab += [w for w in _COMMON_WORDS if "'" not in w]
    vocab = list(dict.fromkeys(vocab))
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(
        vocab={token: index for index, token in enumerate(vocab)},
        do_lower_case=True,
        model_max_length=128,
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    with quiet_transformers():
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    # transformers 5 saves tokenizer.json only; vocab.txt serves older loaders.
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return out_dir


def tiny_asr_model(out_dir, seed=0):
    """Write a tiny random wav2vec2 CTC model that loads in an ASR pipeline.

    A ``Wav2Vec2ForCTC`` (hidden 32, 2 layers, the CNN of
    :mod:`sser_lobes.encoders.tiny_ssl`) with a ``Wav2Vec2CTCTokenizer`` over the
    upper-case letters, ``'`` and the word delimiter ``|``, and a
    ``Wav2Vec2FeatureExtractor``, saved as a ``Wav2Vec2Processor``, so
    ``transformers.pipeline("automatic-speech-recognition", model=out_dir)``
    works offline. The output is random letters (the CTC blank and the
    ``<s>``/``</s>`` tokens are suppressed, so it is never empty): for tests.

    Arguments
    ---------
    out_dir : str or os.PathLike
        Folder to write; an existing model (``config.json``) is an error.
    seed : int
        Seed of the random weights.

    Returns
    -------
    pathlib.Path
        The model folder.

    Example
    -------

    >>> import numpy as np
    >>> import tempfile
    >>> from transformers import pipeline
    >>> asr = pipeline("automatic-speech-recognition",
    ...                model=tiny_asr_model(tempfile.mkdtemp() + "/asr"))
    >>> text = asr(np.random.randn(8000).astype(np.float32))["text"]
    >>> len(text) > 0 and set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")
    True
    """
    from transformers import (
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    from sser_lobes.encoders.tiny_ssl import tiny_ssl_config

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        raise FileExistsError(
            f"{out_dir} already holds a model (config.json); choose another folder."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for char in "ABCDEFGHIJKLMNOPQRSTUVWXYZ'":
        vocab[char] = len(vocab)
    vocab_file = out_dir / "vocab.json"
    vocab_file.write_text(json.dumps(vocab, indent=1) + "\n", encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(
        os.fspath(vocab_file),
        unk_token="<unk>",
        pad_token="<pad>",
        word_delimiter_token="|",
    )
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    config = tiny_ssl_config("wav2vec2", "layer")
    config.vocab_size = len(vocab)
    config.pad_token_id, config.bos_token_id, config.eos_token_id = 0, 1, 2
    config.ctc_loss_reduction = "mean"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Wav2Vec2ForCTC(config)
    with torch.no_grad():  # never predict blank, <s>, </s> or <unk>: text is non-empty
        model.lm_head.bias[:4] = -100.0
    processor = Wav2Vec2Processor(
        feature_extractor=feature_extractor, tokenizer=tokenizer
    )
    with quiet_transformers():
        model.save_pretrained(out_dir, safe_serialization=True)
        processor.save_pretrained(out_dir)
    return out_dir
