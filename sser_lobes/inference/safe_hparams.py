"""Check an exported model's ``hyperparams.yaml`` before anything in it is built.

HyperPyYAML builds whatever a file names: ``!new:``, ``!name:`` and
``!apply:`` import and call any Python callable, ``!applyref:`` calls one
while references are resolved, ``!include:`` reads another file, and a plain
value that looks like a tuple, ``(...)``, is parsed with PyYAML's full loader,
whose ``!!python/`` tags also run code. Loading a downloaded file as is (what
SpeechBrain's ``Pretrained.from_hparams`` does) therefore runs code chosen by
whoever wrote the file.

:func:`check_hparams_text` parses the text without constructing anything
(ruamel's composer keeps tags as data), walks every node and refuses any tag
except the ones :mod:`sser_lobes.inference.export` writes (:data:`ALLOWED_TAGS`), the
references ``!ref`` / ``!copy`` and ``!tuple``.
:func:`load_checked_hparams` checks a file, resolves its references and the
caller's overrides, checks the result again, and only then builds it.
"""

import re
from pathlib import Path

import ruamel.yaml
import yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

from sser_lobes.errors import UnsafeHparamsError

#: The constructor tags :mod:`sser_lobes.inference.export` writes, spelled as it writes
#: them: the only ones an exported model may use.
ALLOWED_TAGS = (
    "!new:sser_lobes.SSLEncoder",
    "!apply:sser_lobes.make_pooling",
    "!new:sser_lobes.nnet.heads.LinearHead",
    "!new:sser_lobes.nnet.heads.MLPHead",
    "!new:sser_lobes.nnet.gender.GenderConditioning",
    "!new:sser_lobes.nnet.text_fusion.TextFusion",
    "!new:sser_lobes.EmotionModel",
    "!new:speechbrain.utils.parameter_transfer.Pretrainer",
    "!name:sser_lobes.inference.recognizer.load_safetensors_state",
)

#: Tags that build nothing: references to other nodes and tuples of data.
REFERENCE_TAGS = ("!ref", "!copy", "!tuple")

# Plain YAML data (what untagged nodes resolve to).
_CORE = "tag:yaml.org,2002:"
_DATA_TAGS = frozenset(
    _CORE + name
    for name in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
)
# HyperPyYAML's implicit tuple resolver, with DOTALL to be on the safe side.
_TUPLE = re.compile(r"^\(.*\)$", re.DOTALL)
# ``<node.attribute>`` makes HyperPyYAML call getattr on a built object.
_ATTRIBUTE_REFERENCE = re.compile(r"<[^<>]*\.[^<>]*>")
_SSL_ENCODER = "!new:sser_lobes.SSLEncoder"
_FALSE = ("false", "False", "FALSE")


def check_hparams_text(text, filename="hyperparams.yaml", resolved=False):
    """Refuse any tag of ``text`` that an exported sser model does not use.

    Nothing is built: the text is only parsed into YAML nodes.

    Arguments
    ---------
    text : str
        The YAML text.
    filename : str
        Named in the error.
    resolved : bool
        Whether ``text`` is the file after reference resolution and
        overrides (the error then names the key instead of a line of the
        file).

    Raises
    ------
    UnsafeHparamsError
        Naming the file, the line (or key) and the tag.

    Example
    -------
    >>> check_hparams_text("head: !new:sser_lobes.nnet.heads.LinearHead [4, 2]")
    >>> try:
    ...     check_hparams_text('a: 1\\nx: !apply:os.system ["touch pwned"]', "m.yaml")
    ... except UnsafeHparamsError as error:
    ...     print(str(error).split(" (allowed")[0])
    m.yaml, line 2: !apply:os.system is not allowed in an exported sser model
    """
    try:
        root = ruamel.yaml.YAML(typ="rt").compose(text)
    except ruamel.yaml.YAMLError as error:
        summary = " ".join(str(error).split())
        raise UnsafeHparamsError(f"{filename}: not valid YAML ({summary})") from None
    seen = set()
    stack = [(root, "")]
    while stack:
        node, key = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        problem = _node_problem(node)
        if problem:
            raise UnsafeHparamsError(_message(filename, node, key, problem, resolved))
        if isinstance(node, ruamel.yaml.MappingNode):
            children = []
            for key_node, value_node in node.value:
                name = key_node.value if isinstance(key_node.value, str) else "?"
                children += [(key_node, key), (value_node, _join(key, name))]
            stack.extend(reversed(children))
        elif isinstance(node, ruamel.yaml.SequenceNode):
            children = [(item, f"{key}[{i}]") for i, item in enumerate(node.value)]
            stack.extend(reversed(children))


def load_checked_hparams(
    path, overrides=None, overrides_must_match=True, trust_hparams=False
):
    """Check, then build, a hyperparameter file (see the module doc).

    Arguments
    ---------
    path : str or Path
        The ``hyperparams.yaml`` to load.
    overrides : dict or None
        Values replacing the file's (as in ``load_hyperpyyaml``).
    overrides_must_match : bool
        Whether every override must name a key of the file.
    trust_hparams : bool
        Skip the checks: this runs code named in the YAML, only for your own
        hand-written files.

    Returns
    -------
    dict
        The built hyperparameters.

    Example
    -------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "hyperparams.yaml"
    >>> _ = path.write_text("size: 4\\nhead: !new:sser_lobes.nnet.heads.LinearHead\\n"
    ...     "    input_size: !ref <size>\\n    n_outputs: 2\\n")
    >>> load_checked_hparams(path, {"size": 8})["head"].input_size
    8
    >>> _ = path.write_text("x: !new:torch.nn.Identity\\n")
    >>> try:
    ...     load_checked_hparams(path)
    ... except UnsafeHparamsError as error:
    ...     print(str(error).split(", ", 1)[1].split(" in an ")[0])
    line 1: !new:torch.nn.Identity is not allowed
    >>> type(load_checked_hparams(path, trust_hparams=True)["x"]).__name__
    'Identity'
    """
    path = Path(path)
    if trust_hparams:
        with open(path, encoding="utf-8") as handle:
            return load_hyperpyyaml(handle, overrides, overrides_must_match)
    text = path.read_text(encoding="utf-8")
    check_hparams_text(text, str(path))
    # Resolving references is safe once only allowed tags are left; it can
    # create new values (string interpolation, overrides, attribute
    # references), so the result is checked again before it is built.
    resolved = resolve_references(text, overrides, overrides_must_match).getvalue()
    check_hparams_text(resolved, str(path), resolved=True)
    return load_hyperpyyaml(resolved)


def _node_problem(node):
    """What is wrong with one node, or None."""
    tag = _tag(node)
    value = node.value if isinstance(node, ruamel.yaml.ScalarNode) else None
    if tag in _DATA_TAGS or tag == "!tuple":
        if isinstance(value, str) and _TUPLE.match(value):
            return _tuple_problem(value)
        return None
    if tag in ("!ref", "!copy"):
        if value is None:
            return f"{tag} must be a scalar such as <key>"
        if _ATTRIBUTE_REFERENCE.search(value):
            return (
                f"{tag} {value} reads an attribute of a built object, which is "
                "not allowed in an exported sser model"
            )
        return None
    if tag == _SSL_ENCODER:
        return _ssl_encoder_problem(node)
    if tag in ALLOWED_TAGS:
        return None
    return (
        f"{_shown(tag)} is not allowed in an exported sser model (allowed: "
        f"{', '.join(ALLOWED_TAGS + REFERENCE_TAGS)})"
    )


def _tag(node):
    tag = node.tag
    return tag if isinstance(tag, str) or tag is None else getattr(tag, "value", tag)


def _shown(tag):
    """``tag:yaml.org,2002:python/...`` as written in a file: ``!!python/...``."""
    return "!!" + tag[len(_CORE) :] if str(tag).startswith(_CORE) else str(tag)


def _tuple_problem(value):
    """HyperPyYAML parses ``(...)`` with PyYAML's full loader: tags there run."""
    try:
        root = yaml.compose("[" + value[1:-1] + "]")
    except yaml.YAMLError:
        return None  # the loader will fail on it too, before building anything
    stack = [root]
    while stack:
        node = stack.pop()
        if node.tag not in _DATA_TAGS:
            return (
                f"the tuple {value!r} holds the tag {_shown(node.tag)}, which is not "
                "allowed in an exported sser model"
            )
        if isinstance(node, yaml.MappingNode):
            stack += [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
    return None


def _ssl_encoder_problem(node):
    """An exported encoder is built from its inline config, weights from
    model.safetensors: it must not name a source to download weights from."""
    args = {}
    if isinstance(node, ruamel.yaml.MappingNode):
        args = {k.value: v for k, v in node.value if isinstance(k.value, str)}
    load_weights = args.get("load_weights")
    source = args.get("source")
    if (
        isinstance(load_weights, ruamel.yaml.ScalarNode)
        and _tag(load_weights) == _CORE + "bool"
        and load_weights.value in _FALSE
        and (source is None or _tag(source) == _CORE + "null")
    ):
        return None
    return (
        f"{_SSL_ENCODER} must have load_weights: False and no source in an "
        "exported sser model (its weights are in model.safetensors)"
    )


def _join(key, name):
    return name if not key else f"{key}.{name}"


def _message(filename, node, key, problem, resolved):
    if resolved:
        where = f"{filename} (after !ref substitution and overrides), key {key or '?'}"
    else:
        where = f"{filename}, line {node.start_mark.line + 1}"
    return (
        f"{where}: {problem}. If you wrote this file yourself and trust it, pass "
        "trust_hparams=True (sser-predict --trust-hparams)."
    )
