"""Numbers about a model read from its state dict alone (no model construction needed).

Key conventions are fairseq's transformer: ``<module>.{q,k,v,out}_proj.weight`` for attention and
``<layer>.fc1.weight`` / ``<layer>.fc2.weight`` for FFNs; head masks are ``<module>.np_head_mask``.
"""
from typing import Dict

import torch

from .core.sparsity import count_near_zero
from .head_masks import MASK_BUFFER, masks_from_state_dict

PRUNABLE_SUFFIXES = (".q_proj.weight", ".k_proj.weight", ".v_proj.weight", ".out_proj.weight", ".fc1.weight", ".fc2.weight")


def attention_module_names(state: Dict[str, torch.Tensor]):
    """Attention modules (those with a ``q_proj.weight``), in state-dict order."""
    return [k[: -len(".q_proj.weight")] for k in state if k.endswith(".q_proj.weight")]


def heads_per_module(state: Dict[str, torch.Tensor], num_heads: int) -> Dict[str, int]:
    """Active heads per attention module; modules without a stored mask count all ``num_heads``."""
    masks = masks_from_state_dict(state)
    return {name: sum(masks[name]) if name in masks else num_heads for name in attention_module_names(state)}


def weight_sparsity(state: Dict[str, torch.Tensor], eps: float) -> float:
    """Share of prunable weights (q/k/v/out, fc1/fc2) with ``|w| < eps``."""
    near_zero, total = count_near_zero([t for k, t in state.items() if k.endswith(PRUNABLE_SUFFIXES)], eps)
    return near_zero / max(total, 1)


def parameter_counts(state: Dict[str, torch.Tensor], eps: float) -> Dict[str, int]:
    """``total`` parameters (buffers and fairseq's version entries excluded) and ``nonzero`` (|w| >= eps)."""
    params = [t for k, t in state.items() if t.is_floating_point() and not k.endswith(("." + MASK_BUFFER, "_float_tensor"))]
    near_zero, total = count_near_zero(params, eps)
    return {"total": total, "nonzero": total - near_zero}
