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


def merged_hparams_text(path):
    """Return the YAML text of ``path`` with its overlay chain applied.

    Arguments
    ---------
    path : str or Path
        A hyperparameter file, plain or with a ``base_hparams`` key (a path
        relative to the file's folder). Bases may themselves be overlays.

    Returns
    -------
    str
        One self-contained HyperPyYAML document (references unresolved).

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "base.yaml").write_text("lr: 1\\nname: !ref run_<lr>\\n")
    >>> _ = (folder / "fast.yaml").write_text("base_hparams: base.yaml\\nlr: 5\\n")
    >>> print(merged_hparams_text(folder / "fast.yaml").strip())
    lr: 5
    name: !ref run_<lr>
    """
    yaml = ruamel.yaml.YAML()
    chain = []
    current = Path(path)
    while True:
        if not current.is_file():
            raise FileNotFoundError(f"Hyperparameter file not found: {current}")
        with open(current, encoding="utf-8") as handle:
            document = yaml.load(handle)
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise ValueError(f"{current}: a hyperparameter file must be a mapping.")
        chain.append((current, document))
        if BASE_KEY not in document:
            break
        base = current.parent / str(document[BASE_KEY])
        if any(base.resolve() == seen.resolve() for seen, _ in chain):
            raise ValueError(f"{current}: base_hparams chain loops back to {base}.")
        current = base

    merged = chain[-1][1]
    for _, overlay in reversed(chain[:-1]):
        overlay = dict(overlay)
        overlay.pop(BASE_KEY)
        recursive_update(merged, overlay, must_match=False)
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
