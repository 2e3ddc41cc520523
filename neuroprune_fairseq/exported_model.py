"""The ``neuroprune_exported_transformer`` model: a fairseq transformer with fewer heads and FFN units.

An exported checkpoint (``python -m neuroprune_fairseq.tools.export``) keeps the training run's model
arguments and adds :data:`SHAPES_FIELD`: ``{"heads": {module: num_heads}, "ffn": {layer: units}}``.
:meth:`ExportedTransformerModel.build_model` builds the standard transformer from those arguments and
then shrinks each listed module to its stored size, so ``fairseq-generate --user-dir neuroprune_fairseq``
loads the smaller weights with no further flags. Attention uses fairseq's own support for pruned heads
(``_adaptive_prune_heads`` + ``skip_embed_dim_check``, which takes the non-fused path that reshapes by
the module's reduced ``num_heads``).
"""
from typing import Dict

import torch.nn as nn
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer.transformer_legacy import TransformerModel, base_architecture
from fairseq.modules.multihead_attention import MultiheadAttention

EXPORTED_ARCH = "neuroprune_exported_transformer"
SHAPES_FIELD = "np_exported_shapes"


def resize_attention(attn: MultiheadAttention, num_heads: int) -> None:
    """Give ``attn`` ``num_heads`` heads of its current size (weights are placeholders until loaded)."""
    attn._adaptive_prune_heads([(h * attn.head_dim, (h + 1) * attn.head_dim) for h in range(num_heads)])
    attn.out_proj.in_features = attn.embed_dim
    attn._set_skip_embed_dim_check()


def resize_ffn(layer: nn.Module, units: int) -> None:
    """Replace ``layer``'s fc1/fc2 with ``units`` hidden units (placeholders until loaded)."""
    layer.fc1 = nn.Linear(layer.fc1.in_features, units)
    layer.fc2 = nn.Linear(units, layer.fc2.out_features)


def apply_shapes(model: nn.Module, shapes: Dict[str, Dict[str, int]]) -> None:
    """Resize every module listed in ``shapes`` whose size differs from the built one."""
    for name, num_heads in shapes["heads"].items():
        attn = model.get_submodule(name)
        if attn.num_heads != num_heads:
            resize_attention(attn, num_heads)
    for name, units in shapes["ffn"].items():
        layer = model.get_submodule(name)
        if layer.fc1.out_features != units:
            resize_ffn(layer, units)


@register_model(EXPORTED_ARCH)
class ExportedTransformerModel(TransformerModel):
    """fairseq's (legacy) ``TransformerModel`` resized to an exported checkpoint's stored shapes."""

    @classmethod
    def build_model(cls, args, task):
        shapes = getattr(args, SHAPES_FIELD, None)
        if shapes is None:
            raise ValueError(f"--arch {EXPORTED_ARCH} only loads checkpoints written by neuroprune_fairseq.tools.export")
        model = super().build_model(args, task)
        apply_shapes(model, shapes)
        return model


@register_model_architecture(EXPORTED_ARCH, EXPORTED_ARCH)
def exported_architecture(args):
    """The stored arguments already hold every size; fill anything older checkpoints lack."""
    base_architecture(args)
