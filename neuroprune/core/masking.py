"""Masked heads' parameters set to zero, on plain tensors named as in fairseq's ``MultiheadAttention``.

Head ``h`` of a module with ``head_dim = d`` owns rows ``h*d:(h+1)*d`` of ``{q,k,v}_proj.{weight,bias}``
and the same slice of the last dimension of ``out_proj.weight``, ``bias_k`` and ``bias_v``;
``out_proj.bias`` belongs to no head. The names are those of ``attn.named_parameters()``, and of a state
dict's entries once the module's prefix is removed, so live modules and checkpoint files share this code.
"""
from typing import Dict, Mapping

import torch

from .heads import head_row_mask

HEAD_ROWS = tuple(f"{p}_proj.{t}" for p in "qkv" for t in ("weight", "bias"))  # heads along dimension 0
HEAD_COLUMNS = ("out_proj.weight", "bias_k", "bias_v")  # heads along the last dimension


def head_dim(out_proj_weight: torch.Tensor, num_heads: int) -> int:
    """Rows per head of a module: fairseq's ``embed_dim // num_heads``.

    Args:
        out_proj_weight: (embed, kept * d); its rows are the embedding width in full-size and exported
            (physically smaller) modules alike.
        num_heads: the architecture's heads in the module, pruned ones included.
    Returns:
        ``d``; ``ValueError`` when ``num_heads`` does not divide ``embed``.
    """
    embed = out_proj_weight.shape[0]
    if num_heads <= 0 or embed % num_heads:
        raise ValueError(f"{num_heads} heads do not divide the {embed} out-projection rows")
    return embed // num_heads


def zero_masked_heads(params: Mapping[str, torch.Tensor], head_mask: torch.Tensor, head_dim: int) -> Dict[str, torch.Tensor]:
    """Copies of a module's head-owned tensors with the masked heads' slices zero.

    Args:
        params: the module's tensors by name relative to the module (see the module docstring); absent
            entries (no bias, no ``bias_k``) are skipped and names owned by no head ignored.
        head_mask: (H,) 0/1, 0 = masked.
        head_dim: ``d``.
    Returns:
        New tensors by the same names, one per head-owned entry of ``params``: (H*d, in) / (H*d,) for
        q/k/v, (embed, H*d) for ``out_proj.weight``, (1, 1, H*d) for ``bias_k`` / ``bias_v``.
    """
    rows = head_row_mask(head_mask, head_dim)  # (H*d,)
    zeroed = {}
    for name in HEAD_ROWS + HEAD_COLUMNS:
        tensor = params.get(name)
        if tensor is None:
            continue
        dim = 0 if name in HEAD_ROWS else tensor.dim() - 1
        if tensor.shape[dim] != rows.numel():
            raise ValueError(f"{name} has {tensor.shape[dim]} entries along its head dimension, but "
                             f"{head_mask.numel()} heads of {head_dim} need {rows.numel()}")
        shape = [1] * tensor.dim()
        shape[dim] = -1
        zeroed[name] = tensor * rows.to(tensor).reshape(shape)
    return zeroed
