"""Where NeuroPrune's matrices live in a fairseq model: attention modules and FFN blocks.

Works on any model built from fairseq's ``MultiheadAttention`` and transformer layers (stock
``transformer`` archs included); wrappers such as DDP are looked through.
"""
from typing import List, Tuple

import torch.nn as nn
from fairseq.modules.multihead_attention import MultiheadAttention


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside fairseq's / torch's distributed wrappers."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model


def attention_modules(model: nn.Module) -> List[Tuple[str, MultiheadAttention]]:
    """``(name, module)`` of every ``MultiheadAttention`` in definition order
    (encoder self, decoder self, decoder cross for a transformer)."""
    return [(name, m) for name, m in unwrap(model).named_modules() if isinstance(m, MultiheadAttention)]


def ffn_blocks(model: nn.Module) -> List[Tuple[str, nn.Linear, nn.Linear]]:
    """``(name, fc1, fc2)`` of every transformer layer's feed-forward block."""
    blocks = []
    for name, module in unwrap(model).named_modules():
        fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
        if isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear):
            blocks.append((name, fc1, fc2))
    return blocks

