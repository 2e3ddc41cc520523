"""Rewrite a fairseq transformer checkpoint into its physically smaller form (see ``tools/export.py``).

The model state is rewritten key by key with :mod:`neuroprune.core.shrink`; the model arguments are switched to
the :mod:`.exported_model` architecture with the new shapes stored beside them. Key conventions are
fairseq's transformer: ``<module>.{q,k,v,out}_proj.{weight,bias}`` for attention and
``<layer>.fc1`` / ``<layer>.fc2`` for FFNs.
"""
import argparse
import copy
from collections.abc import Mapping
from typing import Dict

import torch
from fairseq import utils
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.models.transformer.transformer_legacy import TransformerModel

from neuroprune.checkpoint_stats import attention_module_names, config_heads, ffn_layer_names, module_head_dim
from neuroprune.core.shrink import dead_units, select_heads, shrink_ffn
from neuroprune.state_keys import DSP_STATE_PREFIX, MASK_BUFFER, PRUNED_EPOCH_BUFFER

from .exported_model import EXPORTED_ARCH, SHAPES_FIELD

Shapes = Dict[str, Dict[str, int]]  # {"heads": {module: num_heads}, "ffn": {layer: units}}


def transformer_args(cfg) -> argparse.Namespace:
    """The model arguments of a (container) checkpoint cfg, as the Namespace fairseq's legacy transformer
    builds from; ``ValueError`` when they do not describe a fairseq transformer."""
    model_cfg = cfg.get("model") if isinstance(cfg, Mapping) else None
    if isinstance(model_cfg, Mapping):
        model_cfg = argparse.Namespace(**model_cfg)
    if not isinstance(model_cfg, argparse.Namespace):
        raise ValueError(f"its cfg has no model arguments (cfg['model'] is {type(model_cfg).__name__})")
    arch = getattr(model_cfg, "arch", None) or getattr(model_cfg, "_name", None)
    model_class = ARCH_MODEL_REGISTRY.get(arch)
    if model_class is None or not issubclass(model_class, TransformerModel):
        raise ValueError(f"its architecture {arch!r} is not a fairseq transformer")
    if getattr(model_cfg, "scale_fc", False):
        raise ValueError("its FFNs have a LayerNorm over the hidden units (--scale-fc), which removing units would change")
    return model_cfg


def model_shapes(state: Dict[str, torch.Tensor], model_args: argparse.Namespace) -> Shapes:
    """Heads per attention module and hidden units per FFN layer, as stored in ``state``."""
    heads = config_heads(model_args)
    return {
        "heads": {m: state[f"{m}.q_proj.weight"].shape[0] // module_head_dim(state, m, heads) for m in attention_module_names(state)},
        "ffn": {layer: state[f"{layer}.fc1.weight"].shape[0] for layer in ffn_layer_names(state)},
    }


def _is_neuroprune_buffer(key: str) -> bool:
    return key == PRUNED_EPOCH_BUFFER or key.startswith(DSP_STATE_PREFIX) or key.endswith("." + MASK_BUFFER)


def shrink_state(state: Dict[str, torch.Tensor], model_args: argparse.Namespace, eps: float) -> Dict[str, torch.Tensor]:
    """The model state with masked heads and dead FFN units removed and NeuroPrune's buffers dropped.

    A head is removed when its mask is 0, whatever its weights hold (DSP checkpoints keep them);
    an FFN unit when its fc1 row and fc2 column are all ``|w| < eps`` (see :func:`neuroprune.core.shrink.shrink_ffn`).
    Tensors left unchanged are the same objects, so tied embeddings stay tied.
    """
    out = {k: v for k, v in state.items() if not _is_neuroprune_buffer(k)}
    heads = config_heads(model_args)
    for module in attention_module_names(state):
        mask = state.get(f"{module}.{MASK_BUFFER}")
        if mask is None or bool(mask.all()):
            continue
        if not bool((mask > 0).any()):
            raise ValueError(f"{module}.{MASK_BUFFER} has no active head")
        d = module_head_dim(state, module, heads)
        for key in (f"{module}.{p}.{t}" for p in ("q_proj", "k_proj", "v_proj") for t in ("weight", "bias")):
            if key in out:
                out[key] = select_heads(out[key], mask, d, dim=0)
        out[f"{module}.out_proj.weight"] = select_heads(out[f"{module}.out_proj.weight"], mask, d, dim=1)
    activation = utils.get_activation_fn(getattr(model_args, "activation_fn", "relu"))
    for layer in ffn_layer_names(state):
        names = [f"{layer}.fc1.weight", f"{layer}.fc1.bias", f"{layer}.fc2.weight", f"{layer}.fc2.bias"]
        remove = dead_units(out[names[0]], out[names[2]], eps)
        if bool(remove.any()):
            shrunk = shrink_ffn(*(out[n] for n in names), remove=remove, activation=activation)
            out.update(zip(names, shrunk))
    return out


def exported_args(model_args: argparse.Namespace, shapes: Shapes) -> argparse.Namespace:
    """A copy of ``model_args`` naming the exported architecture and carrying ``shapes``."""
    exported = copy.copy(model_args)
    exported.arch = exported._name = EXPORTED_ARCH
    setattr(exported, SHAPES_FIELD, shapes)
    return exported
