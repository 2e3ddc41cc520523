"""Weight sparsity during training, applied around every optimizer step of the plugin's tasks.

Three mechanisms, each off by default (then training is plain fairseq's):
* ``--np-keep-zeros``: a weight of q/k/v/out/fc1/fc2 that is exactly zero before an update is zero after it,
  so a pruned model fine-tunes with its mask fixed. The mask is read from the weights themselves before every
  update, so it needs no state of its own and survives checkpoints and resumes.
* ``--np-gmp-sparsity S``: gradual magnitude pruning (Zhu and Gupta 2017) with torch.ao.pruning's cubic
  schedule (``neuroprune.core.gradual``): every ``--np-gmp-interval`` updates from ``--np-gmp-start-update`` to
  ``--np-gmp-end-update``, each matrix's smallest active entries are zeroed up to the schedule's share; between
  those updates the zeros are kept (it implies ``--np-keep-zeros``). Active entries are those of unmasked heads.
* ``--np-prox-strength L``: the l1 proximal step after every update, soft-thresholding every q/k/v/out/fc1/fc2
  weight by ``lr * L`` (weights within ``lr * L`` of zero become exactly zero).
torch.ao.pruning's sparsifier is not used for the masks themselves: it keeps them as parametrizations, which
rename the weights in the state dict (``parametrizations.weight.original``) that fairseq's checkpoints,
resume and ``fairseq-generate`` read.
"""
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from fairseq.tasks.translation import TranslationConfig

from neuroprune.core.gradual import cubic_target, prune_smallest, soft_threshold
from neuroprune.core.heads import head_row_mask

from . import head_masks
from .model_parts import attention_modules, ffn_blocks
from .optim_sync import copy_model_params_to_master

logger = logging.getLogger(__name__)


@dataclass
class SparseTrainingConfig(TranslationConfig):
    np_keep_zeros: bool = field(
        default=False,
        metadata={"help": "weights of q/k/v/out/fc1/fc2 that are exactly zero before an update stay zero after it "
                          "(sparse fine-tuning of a pruned model with its mask fixed)"},
    )
    np_gmp_sparsity: float = field(
        default=0.0,
        metadata={"help": "gradual magnitude pruning: share of each q/k/v/out/fc1/fc2 matrix's active entries (those of "
                          "unmasked heads) that is zero from --np-gmp-end-update on, reached by torch.ao.pruning's cubic "
                          "schedule; 0 = off"},
    )
    np_gmp_start_update: int = field(
        default=0,
        metadata={"help": "gradual magnitude pruning: updates done when the first pruning step happens (counted from the "
                          "start of this run's training)"},
    )
    np_gmp_end_update: int = field(
        default=0,
        metadata={"help": "gradual magnitude pruning: updates done when --np-gmp-sparsity is reached (the last pruning step)"},
    )
    np_gmp_interval: int = field(
        default=10,
        metadata={"help": "gradual magnitude pruning: updates between two pruning steps; --np-gmp-end-update minus "
                          "--np-gmp-start-update must be a multiple of it"},
    )
    np_prox_strength: float = field(
        default=0.0,
        metadata={"help": "l1 proximal step after every update: every q/k/v/out/fc1/fc2 weight moves lr times this towards "
                          "zero and stops at zero; 0 = off"},
    )


Matrix = Tuple[str, torch.nn.Parameter, torch.Tensor]  # (name, weight, active entries as bool of its shape)


def prunable_matrices(model) -> List[Matrix]:
    """Every q/k/v/out projection and fc1/fc2 weight of ``model`` with its active entries (unmasked heads' rows
    of q/k/v, their columns of out; every entry of fc1/fc2)."""
    matrices = []
    for name, attn in attention_modules(model):
        rows = head_row_mask(head_masks.head_mask(attn), attn.head_dim).bool()  # (H*d,)
        for proj in ("q_proj", "k_proj", "v_proj"):
            weight = getattr(attn, proj).weight  # (H*d, in)
            matrices.append((f"{name}.{proj}", weight, rows[:, None].expand_as(weight)))
        out = attn.out_proj.weight  # (embed, H*d)
        matrices.append((f"{name}.out_proj", out, rows[None, :].expand_as(out)))
    for name, fc1, fc2 in ffn_blocks(model):
        matrices += [(f"{name}.fc1", fc1.weight, torch.ones_like(fc1.weight, dtype=torch.bool)),
                     (f"{name}.fc2", fc2.weight, torch.ones_like(fc2.weight, dtype=torch.bool))]
    return matrices


class WeightSparsity:
    """The task-side driver: call :meth:`before_update` before the optimizer step and :meth:`after_update` after it."""

    def __init__(self, cfg: SparseTrainingConfig):
        self.keep_zeros = cfg.np_keep_zeros or cfg.np_gmp_sparsity > 0
        self.gmp = cfg.np_gmp_sparsity
        self.start, self.end, self.interval = cfg.np_gmp_start_update, cfg.np_gmp_end_update, cfg.np_gmp_interval
        self.prox = cfg.np_prox_strength
        if not 0 <= self.gmp < 1:
            raise ValueError(f"--np-gmp-sparsity must be in [0, 1), got {self.gmp}")
        if self.gmp > 0:
            try:
                cubic_target(self.end, self.gmp, self.start, self.end, self.interval)
            except ValueError as err:
                raise ValueError(f"--np-gmp-start-update {self.start}, --np-gmp-end-update {self.end}, --np-gmp-interval "
                                 f"{self.interval}: {err}") from err
            if self.start < 0:
                raise ValueError(f"--np-gmp-start-update must be >= 0, got {self.start}")
        if not self.prox >= 0:
            raise ValueError(f"--np-prox-strength must be >= 0, got {self.prox}")
        self._zeros: Dict[str, torch.Tensor] = {}

    @property
    def enabled(self) -> bool:
        return self.keep_zeros or self.prox > 0

    def before_update(self, model) -> None:
        """Remember which weights are exactly zero now (when they are to stay zero)."""
        if self.keep_zeros:
            self._zeros = {name: weight.detach() == 0 for name, weight, _ in prunable_matrices(model)}

    @torch.no_grad()
    def after_update(self, model, optimizer, update_num: int, lr: float) -> None:
        """Re-zero the remembered zeros, then the proximal step, then a pruning step when one is due after
        ``update_num + 1`` updates; the fp32 master copy (``--fp16``) follows."""
        if not self.enabled:
            return
        done = update_num + 1
        prune_now = self.gmp > 0 and self.start <= done <= self.end and (done - self.start) % self.interval == 0
        target = cubic_target(done, self.gmp, self.start, self.end, self.interval) if prune_now else 0.0
        for name, weight, active in prunable_matrices(model):
            if name in self._zeros:
                weight.masked_fill_(self._zeros[name], 0)
            if self.prox > 0:
                weight.copy_(soft_threshold(weight, lr * self.prox))
            if prune_now:
                weight.copy_(prune_smallest(weight, active, target))
        self._zeros = {}
        if prune_now:
            logger.info(f"neuroprune | gradual magnitude pruning after {done} updates: {target:.4f} of each matrix's active entries zero")
        copy_model_params_to_master(optimizer)
