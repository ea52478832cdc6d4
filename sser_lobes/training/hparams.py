"""Loading recipe hyperparameters, with small overlay files on a base file.

A variant such as ``train_hubert_large.yaml`` holds only what differs from
``train_wavlm_large.yaml`` plus one key naming its base::

    base_hparams: train_wavlm_large.yaml
    ssl_source: facebook/hubert-large-ll60k
    experiment_name: hubert_large

The overlay keys replace (or, for nested mappings, update) the base keys
before any ``!ref`` is resolved, so everything that depends on them follows,
and new keys may be added. Command-line overrides apply last and, as in
SpeechBrain, must name existing keys.
"""

import io
from pathlib import Path

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import recursive_update

BASE_KEY = "base_hparams"


def _load_mapping(path, yaml):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Hyperparameter file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        document = yaml.load(handle)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ValueError(f"{path}: a hyperparameter file must be a mapping.")
    return document


def _merged(path, yaml, seen):
    """The mapping of ``path`` with its bases applied (see merged_hparams_text)."""
    path = Path(path)
    if path.resolve() in seen:
        raise ValueError(f"{path}: base_hparams chain loops back to this file.")
    seen = seen | {path.resolve()}
    document = _load_mapping(path, yaml)
    if BASE_KEY not in document:
        return document
    bases = document.pop(BASE_KEY)
    bases = [bases] if isinstance(bases, str) else list(bases)
    merged = _merged(path.parent / str(bases[0]), yaml, seen)
    for extra in bases[1:]:
        # Further bases are overlays on the same root: only their own keys.
        overlay = _load_mapping(path.parent / str(extra), yaml)
        overlay.pop(BASE_KEY, None)
        recursive_update(merged, overlay, must_match=False)
    recursive_update(merged, document, must_match=False)
    return merged


def merged_hparams_text(path):
    """Return the YAML text of ``path`` with its overlay chain applied.

    Arguments
    ---------
    path : str or Path
        A hyperparameter file, plain or with a ``base_hparams`` key: a path
        relative to the file's folder, or a list of them. The first base is
        merged fully (it may itself be an overlay); further bases are overlays
        on the same root and contribute their own keys, in order; the file's
        keys come last. E.g. ``base_hparams: [with_gender.yaml, with_text.yaml]``.

    Returns
    -------
    str
        One self-contained HyperPyYAML document (references unresolved).

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "base.yaml").write_text("lr: 1\\nname: !ref run_<lr>\\nbs: 2\\n")
    >>> _ = (folder / "fast.yaml").write_text("base_hparams: base.yaml\\nlr: 5\\n")
    >>> _ = (folder / "big.yaml").write_text("base_hparams: base.yaml\\nbs: 8\\n")
    >>> _ = (folder / "both.yaml").write_text("base_hparams: [fast.yaml, big.yaml]\\n")
    >>> print(merged_hparams_text(folder / "both.yaml").strip())
    lr: 5
    name: !ref run_<lr>
    bs: 8
    """
    yaml = ruamel.yaml.YAML()
    merged = _merged(path, yaml, frozenset())
    stream = io.StringIO()
    yaml.dump(merged, stream)
    return stream.getvalue()


def load_hparams(path, overrides=None):
    """Load a (possibly overlay) hyperparameter file with command-line overrides.

    Arguments
    ---------
    path : str or Path
        Hyperparameter file.
    overrides : str or dict or None
        SpeechBrain-style overrides (``speechbrain.parse_arguments`` output).

    Returns
    -------
    hparams : dict
        The loaded hyperparameters.
    merged_text : str
        The merged YAML text (to save with the experiment).

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "base.yaml").write_text("lr: 1\\nname: !ref run_<lr>\\n")
    >>> _ = (folder / "fast.yaml").write_text("base_hparams: base.yaml\\nlr: 5\\n")
    >>> hparams, _ = load_hparams(folder / "fast.yaml", "lr: 7")
    >>> hparams["name"]
    'run_7'
    """
    text = merged_hparams_text(path)
    return load_hyperpyyaml(text, overrides or None), text
