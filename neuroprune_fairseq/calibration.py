"""Calibration data for data-aware pruning: what a model's linear layers see on real batches.

A few hundred sentences of a split are run through the model with teacher forcing (the decoder reads
the reference target), in eval mode, with no gradient. Forward pre-hooks on named ``nn.Linear`` layers
hand their input rows to a callback, padding positions left out. Every attention module is switched
to fairseq's slow path for the duration (the fused fast path never calls q/k/v/out_proj as modules,
so their hooks would not fire); its previous setting is restored afterwards.

Used by the elimination pass's data-aware variants (the input of ``out_proj`` is the concatenation of
the heads' outputs) and by post-training pruning (the inputs of every projection and FFN matrix).
"""
from typing import Callable, Dict, List

import numpy as np
import torch
import torch.nn as nn

from .model_parts import attention_modules, unwrap


def calibration_batches(task, model, subset: str, sentences: int, max_tokens: int = 4096, seed: int = 1) -> List[dict]:
    """Up to ``sentences`` sentences of ``subset``, a seeded random choice, batched as fairseq samples.

    The split is loaded if the task has not loaded it yet (a split already loaded, such as the training
    split during training, is used as it is). Samples are moved to the model's device.

    Raises:
        ValueError: ``sentences`` < 1, or the split is empty.
    """
    from fairseq import utils

    if sentences < 1:
        raise ValueError(f"calibration needs at least one sentence, got {sentences}")
    if subset not in task.datasets:
        task.load_dataset(subset)
    dataset = task.dataset(subset)
    if len(dataset) == 0:
        raise ValueError(f"calibration split '{subset}' has no sentences")
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:sentences]
    keep = np.zeros(len(dataset), dtype=bool)
    keep[chosen.numpy()] = True
    order = dataset.ordered_indices()  # by length, so batches waste little padding
    indices = order[keep[order]]
    batches = dataset.batch_by_size(indices, max_tokens=max_tokens)
    device = next(unwrap(model).parameters()).device
    return [utils.move_to_cuda(s, device) if device.type == "cuda" else s for s in (dataset.collater([dataset[int(i)] for i in b]) for b in batches)]


def _reads_source(name: str) -> bool:
    """Whether the linear layer ``name`` reads source positions (encoder layers, cross-attention keys
    and values) rather than target positions (decoder layers otherwise)."""
    return name.startswith("encoder.") or name.endswith(("encoder_attn.k_proj", "encoder_attn.v_proj"))


def capture_linear_inputs(model, batches, linears: Dict[str, nn.Linear], on_rows: Callable[[str, torch.Tensor], None]) -> None:
    """Teacher-forced forward of every batch; ``on_rows(name, rows)`` receives each named layer's input.

    Args:
        model: a fairseq encoder-decoder model (wrappers are looked through).
        batches: fairseq samples (``net_input`` with ``src_tokens`` and ``prev_output_tokens``).
        linears: ``{name: layer}`` with names as in ``model.named_modules()``; only layers inside
            transformer layers (``encoder.layers.*``, ``decoder.layers.*``), whose inputs are (T, B, C).
        on_rows: called once per layer and batch with ``rows`` (n, C): the input at non-padding positions.
    Raises:
        ValueError: a name outside the transformer layers.
    """
    root = unwrap(model)
    for name in linears:
        if not name.startswith(("encoder.layers.", "decoder.layers.")):
            raise ValueError(f"calibration hooks only layers inside transformer layers, got '{name}'")
    pad = root.encoder.dictionary.pad()
    padding = {}  # "source"/"target" -> (T, B) bool, set per batch

    def hook(name):
        side = "source" if _reads_source(name) else "target"

        def take_rows(_module, args):
            x = args[0]  # (T, B, C)
            mask = padding[side]
            if tuple(x.shape[:2]) != tuple(mask.shape):
                raise RuntimeError(f"calibration: {name} got input {tuple(x.shape)}, expected ({mask.shape[0]}, {mask.shape[1]}, C)")
            on_rows(name, x[~mask].detach())
        return take_rows

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in linears.items()]
    slow = {attn: attn.skip_embed_dim_check for _, attn in attention_modules(root)}
    was_training = root.training
    try:
        for attn in slow:
            attn.skip_embed_dim_check = True
        root.eval()
        with torch.no_grad():
            for sample in batches:
                net_input = sample["net_input"]
                padding["source"] = net_input["src_tokens"].eq(pad).t()  # (S, B)
                padding["target"] = net_input["prev_output_tokens"].eq(pad).t()  # (T, B)
                root(**net_input)
    finally:
        for handle in handles:
            handle.remove()
        for attn, setting in slow.items():
            attn.skip_embed_dim_check = setting
        root.train(was_training)


class InputStats:
    """First and second moments of each layer's input rows, accumulated in float64.

    Usable as the ``on_rows`` callback of :func:`capture_linear_inputs`.

    Attributes:
        xtx: name -> (C, C) sum of x x^T over rows.
        xsum: name -> (C,) sum of x over rows.
        count: name -> rows seen.
    """

    def __init__(self):
        self.xtx: Dict[str, torch.Tensor] = {}
        self.xsum: Dict[str, torch.Tensor] = {}
        self.count: Dict[str, int] = {}

    def __call__(self, name: str, rows: torch.Tensor) -> None:
        x = rows.double().cpu()  # (n, C)
        if name not in self.xtx:
            self.xtx[name] = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
            self.xsum[name] = torch.zeros(x.shape[1], dtype=torch.float64)
            self.count[name] = 0
        self.xtx[name] += x.T @ x
        self.xsum[name] += x.sum(0)
        self.count[name] += x.shape[0]

    def mean_cov(self, name: str):
        """(mean (C,), covariance (C, C)) of ``name``'s input rows (population covariance)."""
        n = self.count[name]
        mean = self.xsum[name] / n
        return mean, self.xtx[name] / n - torch.outer(mean, mean)


def head_output_stats(model, batches) -> Dict[str, tuple]:
    """Mean and covariance of every attention module's concatenated head outputs (its out_proj input).

    Returns:
        ``{module name: (mean (H*d,), cov (H*d, H*d))}`` in float64, for every attention module.
    """
    modules = attention_modules(model)
    stats = InputStats()
    capture_linear_inputs(model, batches, {f"{name}.out_proj": attn.out_proj for name, attn in modules}, stats)
    return {name: stats.mean_cov(f"{name}.out_proj") for name, _ in modules}
