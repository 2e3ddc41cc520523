"""Numbers about a model read from its state dict alone (no model construction needed).

Key conventions are fairseq's transformer: ``<module>.{q,k,v,out}_proj.weight`` for attention and
``<layer>.fc1.weight`` / ``<layer>.fc2.weight`` for FFNs; head masks are ``<module>.np_head_mask``.

Masked heads count as removed everywhere: some checkpoints (DSP's) store a mask while the masked heads'
weights are still non-zero in the file (they are zeroed only when loaded into a model), so every figure
here is taken on :func:`apply_head_masks`'s copy. Exported (physically smaller) checkpoints have no masks
and fewer q/k/v rows / FFN units; their heads are counted from the rows.
"""
from collections.abc import Mapping
from typing import Dict, List

import torch

from .core.masking import HEAD_COLUMNS, HEAD_ROWS, head_dim, zero_masked_heads
from .core.penalties import attention_penalty, mlp_penalty
from .core.sparsity import count_near_zero, count_zero, zero_below
from .core.topology import degree_histogram, degree_summary, neuron_degrees
from .state_keys import DSP_STATE_PREFIX, MASK_BUFFER, short_name

MATRIX_SUFFIXES = {
    "q": ".q_proj.weight", "k": ".k_proj.weight", "v": ".v_proj.weight", "out": ".out_proj.weight",
    "fc1": ".fc1.weight", "fc2": ".fc2.weight",
}
EXACT_ZERO = "exact_zero"  # records' sparsity definition: exact zeros of the evaluated model (see exact_sparsity)
DEGREE_BINS = 64  # histogram bins over [0, max degree] (fewer when the max degree is smaller)


def load_checkpoint(path: str) -> dict:
    """A fairseq checkpoint on CPU; ``ValueError`` when the file is not one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types (pickle, zip, EOF) for a file that is not a checkpoint
        raise ValueError(f"{path} is not a readable torch checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ValueError(f"{path} is not a fairseq checkpoint (no 'model' state dict)")
    return ckpt


def architecture_heads(ckpt: dict) -> Dict[str, int]:
    """Heads per attention module on each side, ``{"encoder": n, "decoder": m}``, from the checkpoint's
    ``cfg.model`` (or legacy ``args``) ``{side}_attention_heads``; 0 where absent."""
    cfg = ckpt.get("cfg") or {}
    return config_heads((cfg.get("model") if isinstance(cfg, Mapping) else None) or ckpt.get("args"))


def config_heads(model_cfg) -> Dict[str, int]:
    """Heads per attention module on each side from model arguments (a mapping or a Namespace); 0 where absent."""
    def value(key):
        return model_cfg.get(key) if isinstance(model_cfg, Mapping) else getattr(model_cfg, key, None)

    return {side: int(value(f"{side}_attention_heads") or 0) for side in ("encoder", "decoder")}


def attention_module_names(state: Dict[str, torch.Tensor]) -> List[str]:
    """Attention modules (those with a ``q_proj.weight``), in state-dict order."""
    return [k[: -len(".q_proj.weight")] for k in state if k.endswith(".q_proj.weight")]


def ffn_layer_names(state: Dict[str, torch.Tensor]) -> List[str]:
    """Layers with an ``fc1``/``fc2`` feed-forward block, in state-dict order."""
    return [k[: -len(".fc1.weight")] for k in state if k.endswith(".fc1.weight") and k.replace(".fc1.", ".fc2.") in state]


def stored_masks(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The (num_heads,) head masks stored in ``state`` (``<module>.np_head_mask``), by module name."""
    suffix = "." + MASK_BUFFER
    return {key[: -len(suffix)]: mask for key, mask in state.items() if key.endswith(suffix)}


def masks_from_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, List[int]]:
    """The stored head masks as lists of 0/1 ints, by module name."""
    return {module: [int(v) for v in mask.tolist()] for module, mask in stored_masks(state).items()}


def module_head_dim(state: Dict[str, torch.Tensor], module: str, num_heads: Dict[str, int]) -> int:
    """Rows per head of ``module``, whose side (the name's first part, ``encoder`` or ``decoder``) has
    ``num_heads[side]`` heads per module (see :func:`architecture_heads`)."""
    return head_dim(state[f"{module}.out_proj.weight"], num_heads.get(module.split(".")[0], 0))


def apply_head_masks(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A copy of ``state`` in which every masked head's parameters are zero (:func:`.core.masking.zero_masked_heads`).

    ``state`` is not modified; tensors of unmasked modules are shared, not copied.
    """
    masked = dict(state)
    for module, mask in stored_masks(state).items():
        if bool(mask.all()):
            continue
        prefix = module + "."
        params = {name: state[prefix + name] for name in HEAD_ROWS + HEAD_COLUMNS if prefix + name in state}
        zeroed = zero_masked_heads(params, mask, head_dim(state[prefix + "out_proj.weight"], mask.numel()))
        masked.update((prefix + name, tensor) for name, tensor in zeroed.items())
    return masked


def module_masks(state: Dict[str, torch.Tensor], num_heads: Dict[str, int]) -> Dict[str, List[int]]:
    """Head mask (1 = kept) of every attention module, by module name.

    A stored mask is returned as is. A module without one (plain fairseq or exported checkpoint) keeps
    ``q rows // head_dim`` heads (:func:`module_head_dim`); an exported checkpoint no longer says which
    heads were removed, so its kept heads are listed first, padded with zeros to the architecture's head count.
    """
    stored = masks_from_state_dict(state)
    masks = {}
    for module in attention_module_names(state):
        if module in stored:
            masks[module] = stored[module]
            continue
        heads = num_heads.get(module.split(".")[0], 0)
        if heads <= 0:
            raise ValueError(f"{module} has no head mask and its head count is unknown (no *_attention_heads in the cfg)")
        kept = state[f"{module}.q_proj.weight"].shape[0] // module_head_dim(state, module, num_heads)
        masks[module] = [1] * kept + [0] * (heads - kept)
    return masks


def _sparsity(masked: Dict[str, torch.Tensor], eps: float) -> Dict[str, object]:
    """Share of near-zero weights overall and per matrix type, from one count over an already masked state."""
    counts = {kind: count_near_zero([t for k, t in masked.items() if k.endswith(suffix)], eps)
              for kind, suffix in MATRIX_SUFFIXES.items()}  # kind -> (near_zero, total)
    near_zero, total = (sum(c[i] for c in counts.values()) for i in (0, 1))
    return {"overall": near_zero / max(total, 1), "by_type": {kind: z / max(n, 1) for kind, (z, n) in counts.items()}}


def weight_sparsity(state: Dict[str, torch.Tensor], eps: float) -> float:
    """Share of prunable weights (q/k/v/out, fc1/fc2) with ``|w| < eps``, masked heads counted as zero."""
    return _sparsity(apply_head_masks(state), eps)["overall"]


def unique_parameter_keys(state: Dict[str, torch.Tensor]) -> List[str]:
    """Keys of the model's parameters, each tied tensor once (shared embeddings are one tensor in a
    loaded checkpoint); buffers, fairseq's version entries and DSP's training state (``np_dsp_*``) are left out."""
    seen, keys = set(), []
    for key, tensor in state.items():
        if not tensor.is_floating_point() or key.endswith(("." + MASK_BUFFER, "_float_tensor", "version")) or key.startswith(DSP_STATE_PREFIX):
            continue
        identity = (tensor.data_ptr(), tuple(tensor.shape))
        if identity not in seen:
            seen.add(identity)
            keys.append(key)
    return keys


def parameter_total(state: Dict[str, torch.Tensor]) -> int:
    """Parameters of a model state, tied tensors once."""
    return sum(state[k].numel() for k in unique_parameter_keys(state))


def parameter_counts(state: Dict[str, torch.Tensor], eps: float) -> Dict[str, int]:
    """``total`` parameters (tied tensors once) and ``nonzero`` (|w| >= eps), masked heads counted as zero."""
    masked = apply_head_masks(state)
    near_zero, total = count_near_zero([masked[k] for k in unique_parameter_keys(state)], eps)
    return {"total": total, "nonzero": total - near_zero}


def prunable_keys(state: Dict[str, torch.Tensor]) -> List[str]:
    """Keys of the q/k/v/out projection and fc1/fc2 weights, in state-dict order."""
    return [k for k in state if k.endswith(tuple(MATRIX_SUFFIXES.values()))]


def threshold_state(state: Dict[str, torch.Tensor], tau: float) -> Dict[str, torch.Tensor]:
    """A copy of ``state`` with masked heads zeroed (:func:`apply_head_masks`) and every q/k/v/out/fc1/fc2
    weight with ``|w| < tau`` set to exactly zero; embeddings, biases and norms are unchanged (shared, not copied)."""
    masked = apply_head_masks(state)
    return {**masked, **{k: zero_below(masked[k], tau) for k in prunable_keys(masked)}}


def exact_sparsity(state: Dict[str, torch.Tensor]) -> Dict[str, object]:
    """Exact zeros of a model state, masked heads counted as zero: the share of q/k/v/out/fc1/fc2 weights
    (``prunable``, and ``by_type``), and of all parameters, tied tensors once (``all_parameters``, embeddings and
    output projection included), with the parameter counts ``total`` and ``nonzero``."""
    masked = apply_head_masks(state)
    by_type = {kind: count_zero([t for k, t in masked.items() if k.endswith(suffix)]) for kind, suffix in MATRIX_SUFFIXES.items()}
    zero, total = (sum(c[i] for c in by_type.values()) for i in (0, 1))
    all_zero, all_total = count_zero([masked[k] for k in unique_parameter_keys(state)])
    return {
        "prunable": zero / max(total, 1),
        "by_type": {kind: z / max(n, 1) for kind, (z, n) in by_type.items()},
        "all_parameters": all_zero / max(all_total, 1),
        "total": all_total,
        "nonzero": all_total - all_zero,
    }


def _penalties(masked: Dict[str, torch.Tensor], eps: float) -> Dict[str, float]:
    """The regularizers R_attn (Eq. 2, summed over attention modules) and R_mlp (Eq. 1, summed over FFN
    blocks) of an already masked state, in float32."""
    r_attn = sum(
        float(attention_penalty(*(masked[f"{m}.{p}_proj.weight"] for p in "qkv"))) for m in attention_module_names(masked)
    )
    r_mlp = sum(float(mlp_penalty(masked[f"{n}.fc1.weight"], masked[f"{n}.fc2.weight"], eps)) for n in ffn_layer_names(masked))
    return {"R_attn": r_attn, "R_mlp": r_mlp}


def ffn_connectivity(state: Dict[str, torch.Tensor], eps: float) -> dict:
    """Per-layer and overall FFN degree statistics, plus the overall degree histogram with its edges."""
    layers, all_degrees, max_degree = [], [], 0
    for name in ffn_layer_names(state):
        fc1, fc2 = state[f"{name}.fc1.weight"], state[f"{name}.fc2.weight"]  # (ffn, embed), (embed, ffn)
        degrees = neuron_degrees(fc1, fc2, eps)  # (ffn,)
        layers.append({"layer": name, "label": short_name(f"{name}.ffn"), **degree_summary(degrees)})
        all_degrees.append(degrees)
        max_degree = max(max_degree, fc1.shape[1] + fc2.shape[0])
    if not layers:
        raise ValueError("the state dict has no FFN blocks (<layer>.fc1.weight / fc2.weight)")
    degrees = torch.cat(all_degrees)  # (all units,)
    edges, counts = degree_histogram(degrees, max_degree, min(DEGREE_BINS, max_degree))
    return {"layers": layers, **degree_summary(degrees), "histogram": {"edges": edges, "counts": counts}}


def topology(state: Dict[str, torch.Tensor], num_heads: Dict[str, int], eps: float) -> dict:
    """The topology report of one model state: heads, head masks, sparsity, FFN connectivity, penalties.

    Args:
        state: a fairseq transformer's model state dict (masked, plain or exported).
        num_heads: heads per module of each side, ``{"encoder": n, "decoder": m}`` (used for modules
            without a stored mask; see :func:`architecture_heads`).
        eps: near-zero threshold.
    Returns:
        A JSON-ready dict; ``head_masks`` lists the modules in state-dict order with their short labels.
    """
    masks = module_masks(state, num_heads)
    masked = apply_head_masks(state)  # once for every figure below
    return {
        "eps": eps,
        "heads_kept": sum(sum(m) for m in masks.values()),
        "heads_total": sum(len(m) for m in masks.values()),
        "heads_per_module": {name: sum(m) for name, m in masks.items()},
        "head_masks": [{"module": name, "label": short_name(name), "mask": m} for name, m in masks.items()],
        "weight_sparsity": _sparsity(masked, eps),
        "ffn": ffn_connectivity(state, eps),
        "penalties": _penalties(masked, eps),
    }
