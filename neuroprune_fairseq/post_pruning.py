"""Post-training pruning of a fairseq transformer, layer by layer: the fairseq side of
:mod:`neuroprune.core.post_training` and :mod:`neuroprune.core.sparsellm`.

Transformer layers are pruned in order, encoder first, each from the calibration inputs it sees with every
earlier layer already pruned (sequential, as SparseGPT does): per layer, one teacher-forced capture of its
linears' inputs (:mod:`.calibration`), then q/k/v/out of each attention module and fc1/fc2 are pruned by the
method; ``sparsellm`` prunes fc1 and fc2 jointly from fc1's input rows and the attention projections by
SparseGPT. ``magnitude`` reads no data. A matrix, Hessian or calibration input that is not finite is refused
with a ``ValueError`` naming the matrix (the layer, for SparseLLM's joint fc1/fc2).

Head masks: only the weights of active heads are pruned (the kept heads' q/k/v rows and out-projection
columns), so the sparsity asked for is that of the weights a head mask has not already removed, and an
exported checkpoint (whose removed heads are gone) is pruned like its masked original. Masked heads are
zeroed again afterwards (:func:`.head_masks.enforce`).
"""
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from neuroprune.core.heads import head_row_mask
from neuroprune.core.post_training import Pattern, check_pattern, magnitude, reconstruction_error, sparsegpt, wanda
from neuroprune.core.sparsellm import sparsellm_ffn

from . import head_masks
from .calibration import InputStats, capture_linear_inputs
from .model_parts import unwrap

METHODS = ("magnitude", "wanda", "sparsegpt", "sparsellm")
KINDS = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "out_proj": "out", "fc1": "fc1", "fc2": "fc2"}


@dataclass
class Settings:
    """What to prune to and how (see :func:`neuroprune.core.post_training.sparsegpt` for block_size and damp)."""

    method: str
    sparsity: float  # with a pattern, N/M
    pattern: Optional[Pattern] = None
    iterations: int = 4  # sparsellm only
    acceptance_test: bool = False  # sparsellm only: keep a re-pruned fc1/fc2 only when its term of F is not larger
    block_size: int = 128
    damp: float = 0.01


def transformer_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, layer)`` of every encoder layer, then every decoder layer."""
    root = unwrap(model)
    return [(f"{side}.layers.{i}", layer) for side in ("encoder", "decoder") for i, layer in enumerate(getattr(root, side).layers)]


def prunable_linears(layer_name: str, layer: nn.Module) -> Dict[str, nn.Linear]:
    """The layer's q/k/v/out projections and fc1/fc2, by full module name, in definition order."""
    return {f"{layer_name}.{name}": module for name, module in layer.named_modules()
            if isinstance(module, nn.Linear) and name.split(".")[-1] in KINDS}


def active_region(layer: nn.Module, layer_name: str, name: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of ``name``'s weight that belong to active heads (all of them for fc1/fc2)."""
    weight = layer.get_submodule(name[len(layer_name) + 1:]).weight
    rows, cols = torch.arange(weight.shape[0]), torch.arange(weight.shape[1])
    kind = KINDS[name.split(".")[-1]]
    if kind in ("fc1", "fc2"):
        return rows, cols
    attn = layer.get_submodule(name[len(layer_name) + 1:].rsplit(".", 1)[0])
    active = head_row_mask(head_masks.head_mask(attn), attn.head_dim).cpu() > 0  # (H*d,)
    return (rows[active], cols) if kind != "out" else (rows, cols[active])


def check_pattern_fits(model: nn.Module, pattern: Optional[Pattern]) -> None:
    """``ValueError`` naming the first matrix whose active inputs the pattern's M does not divide."""
    for layer_name, layer in transformer_layers(model):
        for name in prunable_linears(layer_name, layer):
            check_pattern(pattern, len(active_region(layer, layer_name, name)[1]), name)


def check_relu_ffns(model: nn.Module) -> None:
    """``ValueError`` naming the first layer whose FFN is not ``fc2(relu(fc1(x)))`` (SparseLLM's z step needs it)."""
    for layer_name, layer in transformer_layers(model):
        norm = getattr(layer, "ffn_layernorm", None) is not None
        if layer.activation_fn is not F.relu or norm:
            activation = getattr(layer.activation_fn, "__name__", repr(layer.activation_fn))
            raise ValueError(f"{layer_name}: SparseLLM's closed-form z step needs fc2(relu(fc1(x))), but this FFN uses "
                             f"{activation}{' and a layer norm before fc2' if norm else ''}; use --method sparsegpt or wanda")


def calibration_tokens(model: nn.Module, batches) -> Dict[str, int]:
    """Non-padding tokens the encoder (source) and decoder (target) layers see over ``batches``."""
    pad = unwrap(model).encoder.dictionary.pad()
    return {"source": sum(int(b["net_input"]["src_tokens"].ne(pad).sum()) for b in batches),
            "target": sum(int(b["net_input"]["prev_output_tokens"].ne(pad).sum()) for b in batches)}


def check_sparsellm_tokens(model: nn.Module, batches) -> None:
    """``ValueError`` saying how many sentences are needed when a side has no more tokens than an FFN's width."""
    tokens, sentences = calibration_tokens(model, batches), sum(len(b["id"]) for b in batches)
    for layer_name, layer in transformer_layers(model):
        side, width = "source" if layer_name.startswith("encoder") else "target", layer.fc1.out_features
        if tokens[side] <= width:
            needed = (width + 1) * sentences // max(tokens[side], 1) + 1
            raise ValueError(f"SparseLLM needs more calibration tokens than the FFN width: {sentences} sentences give "
                             f"{tokens[side]} {side} tokens for {layer_name}'s width {width}; about {needed} sentences are needed")


class _Capture(InputStats):
    """Input moments of every linear, plus the raw input rows of the fc1 layers (for SparseLLM)."""

    def __init__(self, keep_rows: bool):
        super().__init__()
        self.keep_rows = keep_rows
        self.rows: Dict[str, List[torch.Tensor]] = {}

    def __call__(self, name, rows):
        super().__call__(name, rows)
        if self.keep_rows and name.endswith(".fc1"):
            self.rows.setdefault(name, []).append(rows.double().cpu())


def _prune_matrix(weight: torch.Tensor, xtx: Optional[torch.Tensor], settings: Settings) -> torch.Tensor:
    if settings.method == "magnitude":
        return magnitude(weight, settings.sparsity, settings.pattern)
    if settings.method == "wanda":
        return wanda(weight, xtx, settings.sparsity, settings.pattern)
    return sparsegpt(weight, xtx, settings.sparsity, settings.pattern, settings.block_size, settings.damp)


def _ffn_sparsellm(layer: nn.Module, rows: torch.Tensor, settings: Settings,
                   heldout: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, dict]:
    fc1, fc2 = layer.fc1, layer.fc2
    b1 = fc1.bias if fc1.bias is not None else torch.zeros(fc1.out_features)
    b2 = fc2.bias if fc2.bias is not None else torch.zeros(fc2.out_features)
    result = sparsellm_ffn(fc1.weight.cpu(), b1.cpu(), fc2.weight.cpu(), b2.cpu(), rows, settings.sparsity, settings.pattern,
                           settings.iterations, block_size=settings.block_size, damp=settings.damp,
                           acceptance_test=settings.acceptance_test, heldout=heldout)
    history = {"objective": result.objective, "output_error": result.output_error}
    return result.fc1, result.fc2, {**history, "heldout_error": result.heldout_error} if heldout is not None else history


def ffn_output(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's feed-forward block on rows ``x`` (n, d), as its forward computes it in eval mode."""
    hidden = layer.activation_fn(layer.fc1(x))  # (n, f)
    if getattr(layer, "ffn_layernorm", None) is not None:
        hidden = layer.ffn_layernorm(hidden)
    return layer.fc2(hidden)


@torch.no_grad()
def prune_layer(layer_name: str, layer: nn.Module, model: nn.Module, batches, settings: Settings, heldout=()) -> dict:
    """Prune one transformer layer in place; returns per-matrix figures, SparseLLM's history and, with
    ``heldout`` batches, the FFN block's relative output error on their fc1 inputs (captured before pruning),
    for SparseLLM after each of its iterations too."""
    linears = prunable_linears(layer_name, layer)
    capture = _Capture(keep_rows=settings.method == "sparsellm")
    if settings.method != "magnitude":
        capture_linear_inputs(model, batches, linears, capture)
    held, held_x, extra = [], None, {}
    if heldout:
        capture_linear_inputs(model, heldout, {f"{layer_name}.fc1": layer.fc1}, lambda _, rows: held.append(rows))
        held_x = torch.cat(held)  # (n, d)
        dense_out = ffn_output(layer, held_x)  # (n, d_out)
    regions = {name: active_region(layer, layer_name, name) for name in linears}
    pruned, matrices = {}, {}
    for name, linear in linears.items():
        rows, cols = regions[name]
        weight = linear.weight.detach().cpu()[rows][:, cols]  # the active part
        xtx = capture.xtx[name][cols][:, cols] if name in capture.xtx else None
        joint = settings.method == "sparsellm" and name.endswith(".fc1")
        try:
            if joint:
                fc1_rows = torch.cat(capture.rows[name])  # (n, d)
                held_rows = held_x.cpu() if held_x is not None else None
                pruned[name], pruned[f"{layer_name}.fc2"], extra["sparsellm"] = _ffn_sparsellm(layer, fc1_rows, settings, held_rows)
            new = pruned[name] if name in pruned else _prune_matrix(weight, xtx, settings)
        except ValueError as err:
            raise ValueError(f"{layer_name if joint else name}: {err}") from err
        matrices[name] = {
            "kind": KINDS[name.split(".")[-1]], "entries": new.numel(), "zeros": int((new == 0).sum()),
            "calibration_error": reconstruction_error(weight, new, xtx) if xtx is not None else None,
        }
        pruned[name] = new
    for name, linear in linears.items():  # written back once all are pruned (SparseLLM reads fc2 while pruning fc1)
        rows, cols = (index.to(linear.weight.device) for index in regions[name])
        linear.weight[rows[:, None], cols[None, :]] = pruned[name].to(linear.weight)
    if heldout:
        extra["ffn_heldout_error"] = float((ffn_output(layer, held_x) - dense_out).pow(2).sum() / dense_out.pow(2).sum().clamp_min(1e-30))
    return {"matrices": matrices, **extra}


def prune_model(model: nn.Module, batches, settings: Settings, heldout=()) -> dict:
    """Prune every transformer layer in order (progress per layer on stderr); masked heads stay zero.

    Args:
        model: a fairseq transformer with head masks attached.
        batches: calibration samples (:func:`.calibration.calibration_batches`); unused by magnitude.
        heldout: optional other samples on which each FFN block's output error is measured.
    Returns:
        ``{"layers": [{"name", "seconds", "matrices": {name: {kind, entries, zeros, calibration_error}},
        "sparsellm"?: {"objective", "output_error", "heldout_error"?}, "ffn_heldout_error"?}]}``; entries and
        zeros count the active weights only; ``ffn_heldout_error`` is ``||Y - Y'||^2 / ||Y||^2`` of the FFN block
        on the held-out samples' inputs to that layer, dense (Y) and pruned (Y'); SparseLLM's ``output_error``
        (calibration inputs) and ``heldout_error`` give it after each iteration, iteration 0 being layer-wise
        SparseGPT on the same inputs, the last the final weights.
    Raises:
        ValueError: see :func:`check_pattern_fits`, :func:`check_relu_ffns`, :func:`check_sparsellm_tokens`, and a
        matrix, Hessian or calibration input that is not finite or a Hessian that stays singular (the message
        names the matrix, or the layer for SparseLLM's fc1/fc2).
    """
    check_pattern_fits(model, settings.pattern)
    if settings.method == "sparsellm":
        check_relu_ffns(model)
        check_sparsellm_tokens(model, batches)
    layers = []
    for layer_name, layer in transformer_layers(model):
        start = time.perf_counter()
        figures = prune_layer(layer_name, layer, model, batches, settings, heldout)
        head_masks.enforce(model)
        seconds = time.perf_counter() - start
        zeros = sum(m["zeros"] for m in figures["matrices"].values())
        entries = sum(m["entries"] for m in figures["matrices"].values())
        history = figures.get("sparsellm", {}).get("heldout_error")
        by_iteration = f" | held-out FFN error by iteration (0 = SparseGPT) {' '.join(f'{e:.4f}' for e in history)}" if history else ""
        print(f"post_prune | {layer_name} | {settings.method} | sparsity {zeros / entries:.4f} of {entries} active weights"
              f" | {seconds:.1f}s{by_iteration}", file=sys.stderr, flush=True)
        layers.append({"name": layer_name, "seconds": round(seconds, 3), **figures})
    return {"layers": layers}
