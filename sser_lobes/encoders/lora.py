"""Low-rank adapters (LoRA) on an SSL encoder's transformer layers, through peft.

:func:`add_lora` puts peft's LoRA layers (``peft.inject_adapter_in_model``,
no hand-written LoRA) on the linear layers of some transformer layers of a
wav2vec 2.0 / HuBERT / WavLM model, from plain numbers (rank, alpha, target
groups, layers): peft is never handed a file. :func:`merge_lora` folds them
back into the weights with peft's own merge, leaving the plain model (same
modules and state-dict keys as before :func:`add_lora`).

The target groups (:data:`LORA_TARGETS`) name linear layers that sser's fast
modules call as modules (:mod:`sser_lobes.encoders.fast_path`): the packed
feed-forward blocks call ``intermediate_dense`` / ``output_dense`` on the
valid frames only, and WavLM's attention calls ``q_proj``, ``k_proj``,
``v_proj`` and ``out_proj`` on contiguous (or packed) frames, so the adapters
take part in every path. (Stock transformers' WavLM attention reads the
projection *weights* into ``F.multi_head_attention_forward`` and would skip
an adapter there; ``tests/test_lora.py`` checks sser's outputs and gradients
against stock transformers with the adapter written into the weight.)

Example
-------
>>> import tempfile, torch
>>> from transformers import AutoModel
>>> from sser_lobes.encoders.tiny_ssl import make_tiny_ssl
>>> model = AutoModel.from_pretrained(make_tiny_ssl(tempfile.mkdtemp(), arch="hubert"))
>>> plain = sorted(model.state_dict())
>>> add_lora(model, rank=4, alpha=8, targets=["feed_forward"], layers=[1])
{'kind': 'lora', 'rank': 4, 'alpha': 8.0, 'targets': ['feed_forward'], 'layers': [1]}
>>> sum(p.numel() for p in model.parameters() if p.requires_grad)  # 2 x (4 x (32 + 64))
768
>>> merge_lora(model)
2
>>> sorted(model.state_dict()) == plain
True
"""

#: Target groups -> the linear layers (module names) they adapt.
LORA_TARGETS = {
    "attention": ("q_proj", "k_proj", "v_proj", "out_proj"),
    "feed_forward": ("intermediate_dense", "output_dense"),
}
#: Adapter kinds a model description may name.
ADAPTER_KINDS = ("lora",)


def parse_targets(targets):
    """Target groups as a sorted list, from a list or ``"a,b"``.

    Example
    -------
    >>> parse_targets("feed_forward,attention")
    ['attention', 'feed_forward']
    >>> parse_targets(["attn"])
    Traceback (most recent call last):
    ...
    ValueError: lora_targets: 'attn' is not a target; choose from attention, ...
    """
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if not isinstance(targets, (list, tuple)) or not targets:
        raise ValueError(
            "lora_targets must name one or more of "
            f"{', '.join(LORA_TARGETS)}, got {targets!r}"
        )
    for target in targets:
        if target not in LORA_TARGETS:
            raise ValueError(
                f"lora_targets: {target!r} is not a target; choose from "
                f"{', '.join(LORA_TARGETS)}"
            )
    if len(set(targets)) != len(targets):
        raise ValueError(f"lora_targets: {list(targets)} names a target twice")
    return sorted(targets)


def add_lora(model, rank, alpha, targets, layers):
    """Put LoRA adapters on ``layers`` of a transformers SSL model, in place.

    Arguments
    ---------
    model : transformers.Wav2Vec2Model, HubertModel or WavLMModel
    rank : int
        The adapters' rank ``r``.
    alpha : float
        peft's ``lora_alpha``: the update ``B A`` is scaled by ``alpha / r``.
    targets : list of str or str
        Groups of :data:`LORA_TARGETS` (``"attention,feed_forward"``).
    layers : list of int
        The transformer layers (0-based) that get adapters.

    Returns
    -------
    dict
        The adapters as data: ``{"kind": "lora", "rank", "alpha", "targets",
        "layers"}``.

    Every parameter of ``model`` but the adapters' is frozen (peft's rule);
    the adapters start as the identity (``B = 0``).
    """
    from peft import LoraConfig, inject_adapter_in_model

    targets = parse_targets(targets)
    layers = sorted(int(k) for k in layers)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"lora_rank must be an integer >= 1, got {rank!r}")
    if not float(alpha) > 0:
        raise ValueError(f"lora_alpha must be > 0, got {alpha!r}")
    config = LoraConfig(
        r=rank,
        lora_alpha=float(alpha),
        lora_dropout=0.0,
        bias="none",
        target_modules=[name for t in targets for name in LORA_TARGETS[t]],
        layers_to_transform=layers,
        layers_pattern="layers",
    )
    inject_adapter_in_model(config, model)
    return {
        "kind": "lora",
        "rank": rank,
        "alpha": float(alpha),
        "targets": targets,
        "layers": layers,
    }


def lora_layers(module):
    """The peft LoRA layers inside ``module`` as ``(parent, name, layer)``."""
    from peft.tuners.lora import LoraLayer

    return [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if isinstance(child, LoraLayer)
    ]


def merge_lora(module):
    """Merge every LoRA adapter inside ``module`` into its linear layer (peft's
    ``merge``) and put the plain layer back in place; returns how many.

    The merged model computes the same function, at the speed and with the
    state-dict keys of a model that never had adapters (what ``export``,
    int8 and ONNX use).
    """
    found = lora_layers(module)
    for parent, name, layer in found:
        layer.merge()
        setattr(parent, name, layer.get_base_layer())
    if found and hasattr(module, "peft_config"):
        del module.peft_config
    return len(found)
