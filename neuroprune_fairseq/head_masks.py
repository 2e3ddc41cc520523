"""Head masks as registered buffers on fairseq ``MultiheadAttention`` modules.

A module's mask is the buffer ``np_head_mask`` of shape (num_heads,), 1 = active, 0 = pruned, so it
is saved in every checkpoint, restored on resume and loaded by ``fairseq-generate``. A pruned head's
q/k/v rows and biases and out-projection columns are kept exactly zero (:func:`enforce`), which removes
the head from every forward path, including the fused ``F.multi_head_attention_forward`` fast path
that never calls ``out_proj`` as a module: with q = k = v = 0 and zero out-columns the head adds nothing.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from neuroprune.core.budget import ThetaChoice, choose_theta, exact_budget_plans
from neuroprune.core.fold import data_fold, head_output_energy, value_bias_carry
from neuroprune.core.heads import (EliminationPlan, fold_out_projection, keep_most_important, linf_distances,
                                   live_distances, plan_from_distances)
from neuroprune.core.masking import zero_masked_heads
from neuroprune.core.similarity import output_distances
from neuroprune.state_keys import DSP_STATE_PREFIX, MASK_BUFFER, PRUNED_EPOCH_BUFFER

from .model_parts import attention_modules, unwrap

DSP_ROOT_FLAG = "_np_dsp_training"  # set on a model whose DSP gates are training


def _check_or_fill_mask(module, state_dict, prefix, *args):
    """Load-time pre-hook: a checkpoint without masks (plain fairseq) gets all heads active;
    a mask of the wrong shape or with no active head is refused with a clear message."""
    key = prefix + MASK_BUFFER
    if key not in state_dict:
        state_dict[key] = torch.ones(module.num_heads)
        return
    mask = state_dict[key]
    if tuple(mask.shape) != (module.num_heads,):
        raise ValueError(
            f"checkpoint head mask {key} has shape {tuple(mask.shape)}, but the model's module has "
            f"{module.num_heads} heads: the checkpoint does not fit this architecture (--arch / head flags)"
        )
    if not bool(((mask == 0) | (mask == 1)).all()) or not bool((mask > 0).any()):
        raise ValueError(f"checkpoint head mask {key} must be 0/1 with at least one active head, got {mask.tolist()}")


def _prepare_root_state(module, state_dict, prefix, *args):
    """Load-time pre-hook of the model: a missing pruned-epoch counter starts at 0, and DSP's gate
    logits and their AdamW state are dropped unless this model trains DSP gates (they only matter to DSP training)."""
    state_dict.setdefault(prefix + PRUNED_EPOCH_BUFFER, torch.zeros((), dtype=torch.long))
    if not getattr(module, DSP_ROOT_FLAG, False):
        for key in [k for k in state_dict if k.startswith(prefix + DSP_STATE_PREFIX)]:
            del state_dict[key]


def attach(model: nn.Module) -> None:
    """Give every attention module a head mask (all ones) and the model a pruned-epoch counter.

    Idempotent. Raises ``ValueError`` for a model without fairseq ``MultiheadAttention`` modules.
    """
    modules = attention_modules(model)
    if not modules:
        raise ValueError(
            "neuroprune: the model has no fairseq MultiheadAttention module, so there are no heads to "
            "penalise or prune; use a transformer --arch"
        )
    root = unwrap(model)
    if not hasattr(root, PRUNED_EPOCH_BUFFER):
        root.register_buffer(PRUNED_EPOCH_BUFFER, torch.zeros((), dtype=torch.long))
        root._register_load_state_dict_pre_hook(_prepare_root_state, with_module=True)
    for _, attn in modules:
        if hasattr(attn, MASK_BUFFER):
            continue
        attn.register_buffer(MASK_BUFFER, torch.ones(attn.num_heads, device=attn.q_proj.weight.device))
        attn._register_load_state_dict_pre_hook(_check_or_fill_mask, with_module=True)
        attn.register_load_state_dict_post_hook(lambda module, incompatible: enforce_module(module))


def head_mask(attn: nn.Module) -> torch.Tensor:
    """The (num_heads,) mask of one attention module."""
    return getattr(attn, MASK_BUFFER)


@torch.no_grad()
def enforce_module(attn: nn.Module) -> None:
    """Zero the parameters of ``attn``'s masked heads in place (no-op when all heads are active)."""
    mask = head_mask(attn)
    if bool(mask.all()):
        return
    params = dict(attn.named_parameters())
    for name, zeroed in zero_masked_heads(params, mask, attn.head_dim).items():
        params[name].copy_(zeroed)


def enforce(model: nn.Module) -> None:
    """Zero the parameters of every masked head of ``model``."""
    for _, attn in attention_modules(model):
        enforce_module(attn)


SIMILARITIES = ("linf", "linf_scaled", "output")
KEEP_RULES = ("paper", "importance")
FOLDS = ("paper", "none", "data")
HeadStats = Dict[str, Tuple[torch.Tensor, torch.Tensor]]  # module name -> head-output (mean, cov), see calibration


@dataclass(frozen=True)
class PassVariant:
    """How an elimination pass compares heads, which head of a similar group stays, and how the others fold.

    Attributes:
        similarity: ``linf`` (the paper's), ``linf_scaled`` (scale-free) or ``output`` (data-aware),
            see ``neuroprune.core.heads.linf_distances`` and ``neuroprune.core.similarity``.
        keep: ``paper`` (Algorithm 3's dominating head) or ``importance`` (the group's head with the
            largest output variance, ``neuroprune.core.fold.head_output_energy``).
        fold: ``paper`` (out-projection columns added, plus the exact value-bias carry), ``none``
            (mask only) or ``data`` (least-squares fold, ``neuroprune.core.fold.data_fold``).
        ridge: ridge of the data-aware fits, relative to the larger output variance of the two heads.
    The default is the paper's pass.
    """

    similarity: str = "linf"
    keep: str = "paper"
    fold: str = "paper"
    ridge: float = 1e-2

    def __post_init__(self):
        for value, allowed, what in ((self.similarity, SIMILARITIES, "similarity"), (self.keep, KEEP_RULES, "keep rule"),
                                     (self.fold, FOLDS, "fold")):
            if value not in allowed:
                raise ValueError(f"unknown {what} '{value}': expected one of {', '.join(allowed)}")
        if not self.ridge >= 0:
            raise ValueError(f"the fold's ridge must be >= 0, got {self.ridge}")

    @property
    def needs_data(self) -> bool:
        """Whether the pass needs head-output statistics from calibration data."""
        return self.similarity == "output" or self.keep == "importance" or self.fold == "data"


PAPER_PASS = PassVariant()


def _module_stats(name: str, variant: PassVariant, stats: Optional[HeadStats]):
    if not variant.needs_data:
        return None
    if stats is None or name not in stats:
        raise ValueError(f"the elimination pass {variant} needs calibration statistics of module {name}")
    return stats[name]


@torch.no_grad()
def apply_plan(attn: nn.Module, plan: EliminationPlan, variant: PassVariant = PAPER_PASS, stats=None) -> EliminationPlan:
    """Fold ``plan``'s pruned heads into the heads that stay (``variant``) and mask them.

    Args:
        attn: the module; plan: from :func:`plan_from_distances`; variant: see :class:`PassVariant`.
        stats: the module's head-output (mean, cov) when ``variant.needs_data``.
    Returns:
        The plan applied (its keepers changed by the importance rule).
    """
    if not plan.pruned:
        return plan
    weight, d = attn.out_proj.weight, attn.head_dim
    if variant.keep == "importance":
        plan = EliminationPlan(keep_most_important(plan.kept_for, head_output_energy(weight, stats[1], attn.num_heads)), plan.min_distance)
    if variant.fold == "paper":
        if attn.v_proj.bias is not None:
            attn.out_proj.bias += value_bias_carry(weight, attn.v_proj.bias, plan.kept_for, d)
        weight.copy_(fold_out_projection(weight, plan.kept_for, d))
    elif variant.fold == "data":
        if attn.out_proj.bias is None:
            raise ValueError("the data-aware fold needs an out-projection bias (the fitted offsets go there)")
        new_weight, bias_change, _ = data_fold(weight, plan.kept_for, d, *stats, variant.ridge)
        weight.copy_(new_weight)
        attn.out_proj.bias += bias_change
    head_mask(attn)[plan.pruned] = 0
    enforce_module(attn)
    return plan


def _distances(attn: nn.Module, variant: PassVariant, stats):
    if variant.similarity == "output":
        full = output_distances(attn.out_proj.weight, *stats, attn.num_heads, variant.ridge)
    else:
        full = linf_distances(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, attn.num_heads,
                              scaled=variant.similarity == "linf_scaled")
    return live_distances(full, head_mask(attn) > 0)


def eliminate(model: nn.Module, theta: float, variant: PassVariant = PAPER_PASS,
              stats: Optional[HeadStats] = None) -> Dict[str, EliminationPlan]:
    """One ELIM_REDUNDANT pass at threshold ``theta`` on every attention module; plans by module name.

    ``stats`` (:func:`calibration.head_output_stats`) is needed when ``variant.needs_data``.
    """
    plans = {}
    for name, attn in attention_modules(model):
        module_stats = _module_stats(name, variant, stats)
        plans[name] = apply_plan(attn, plan_from_distances(_distances(attn, variant, module_stats), theta), variant, module_stats)
    return plans


def eliminate_to_budget(model: nn.Module, target: int, floor: int, variant: PassVariant = PAPER_PASS,
                        stats: Optional[HeadStats] = None, exact: bool = False) -> Tuple[ThetaChoice, Dict[str, EliminationPlan]]:
    """One pass whose theta is chosen (:func:`choose_theta`) to keep ``target`` heads, never fewer than ``floor``;
    with ``exact``, exactly ``target`` (:func:`exact_budget_plans`: the heads farthest from their keepers stay).

    Returns the choice and the plans applied (none when no threshold fits).
    """
    modules = [(name, attn, _module_stats(name, variant, stats)) for name, attn in attention_modules(model)]
    distances = [_distances(attn, variant, module_stats) for _, attn, module_stats in modules]
    if exact:
        theta, plans = exact_budget_plans(distances, target)
        kept = sum(len(d.live) for d in distances) if theta is None else target
        choice = ThetaChoice(theta=theta, kept=kept, reached=kept <= target)
    else:
        choice = choose_theta(distances, target, floor)
        plans = [plan_from_distances(d, choice.theta) for d in distances] if choice.theta is not None else []
    if choice.theta is None:
        return choice, {}
    return choice, {name: apply_plan(attn, plan, variant, module_stats) for (name, attn, module_stats), plan in zip(modules, plans)}


def heads_kept(model: nn.Module) -> Dict[str, int]:
    """Active heads per attention module, by module name."""
    return {name: int(head_mask(attn).sum()) for name, attn in attention_modules(model)}


def total_heads(model: nn.Module) -> int:
    """Heads in the architecture, active or not."""
    return sum(attn.num_heads for _, attn in attention_modules(model))

