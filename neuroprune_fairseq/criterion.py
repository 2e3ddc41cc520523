"""Label-smoothed cross entropy plus NeuroPrune's regularizers (or, with ``--np-penalty l1``, the l1
baseline's plain l1 of the same matrices).

Scale convention: fairseq criteria return the loss *summed* over the batch's ``sample_size`` (target
tokens, or sentences with ``--sentence-avg``), and the trainer divides gradients by the summed
``sample_size`` of the whole update. To make ``--np-alpha`` / ``--np-beta`` act on the normalised
(per-token) loss, the penalties are added as ``sample_size * (alpha * R_attn + beta * R_mlp)``: after
the trainer's division, over any number of micro-batches (``--update-freq``) and ranks, the objective is
exactly ``mean_token_loss + alpha * R_attn + beta * R_mlp``.

The penalties enter training only (``model.training``); validation loss stays the plain label-smoothed
cross entropy, so checkpoint selection compares like with like across epochs.
"""
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import metrics, utils
from fairseq.dataclass import ChoiceEnum
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from omegaconf import II

from neuroprune.core.penalties import attention_penalty, l1_penalty, mlp_penalty

from .model_parts import attention_modules, ffn_blocks

PENALTY_CHOICES = ChoiceEnum(["neuroprune", "l1"])


@dataclass
class NeuroPruneCriterionConfig(LabelSmoothedCrossEntropyCriterionConfig):
    np_alpha: float = field(
        default=0.0,
        metadata={"help": "weight of the attention group penalty R_attn (paper Eq. 2) on the per-token loss scale; 0 disables it"},
    )
    np_beta: float = field(
        default=0.0,
        metadata={"help": "weight of the preferential-attachment MLP penalty R_mlp (paper Eq. 1) on the per-token loss scale; 0 disables it"},
    )
    np_penalty: PENALTY_CHOICES = field(
        default="neuroprune",
        metadata={"help": "regularizers weighted by --np-alpha / --np-beta: 'neuroprune' (Eq. 2 group l1^0.5 on q/k/v, Eq. 1 weighted l1 on fc1/fc2) or 'l1' (the paper's l1 baseline: plain l1 on the same q/k/v and fc1/fc2 weights)"},
    )
    np_eps: Optional[float] = field(
        default=II("task.np_eps"),
        metadata={"help": "|w| below this counts as zero in the MLP penalty's near-zero count; the task's --np-eps (defined here only when the task has none)"},
    )


def model_penalties(model, eps: float, kind: str = "neuroprune"):
    """``(R_attn, R_mlp)`` summed over all attention modules and all FFN blocks of ``model``.

    ``kind`` 'neuroprune' gives Eq. 2 and Eq. 1; 'l1' gives the plain l1 of the same matrices.
    """
    if kind == "neuroprune":
        attn_term, mlp_term = attention_penalty, lambda fc1, fc2: mlp_penalty(fc1, fc2, eps)
    else:
        attn_term = mlp_term = l1_penalty
    device = next(model.parameters()).device
    r_attn = torch.zeros((), device=device)
    for _, attn in attention_modules(model):
        r_attn = r_attn + attn_term(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight)
    r_mlp = torch.zeros((), device=device)
    for _, fc1, fc2 in ffn_blocks(model):
        r_mlp = r_mlp + mlp_term(fc1.weight, fc2.weight)
    return r_attn, r_mlp


@register_criterion("neuroprune_label_smoothed_cross_entropy", dataclass=NeuroPruneCriterionConfig)
class NeuroPruneCriterion(LabelSmoothedCrossEntropyCriterion):
    """``loss + alpha * R_attn + beta * R_mlp`` with each term logged as its own metric."""

    def __init__(self, task, sentence_avg, label_smoothing, ignore_prefix_size=0, report_accuracy=False, np_alpha=0.0, np_beta=0.0, np_penalty="neuroprune", np_eps=None):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size=ignore_prefix_size, report_accuracy=report_accuracy)
        for flag, value in (("--np-alpha", np_alpha), ("--np-beta", np_beta)):
            if value < 0:
                raise ValueError(f"{flag} must be >= 0, got {value}")
        self.np_alpha = np_alpha
        self.np_beta = np_beta
        self.np_penalty = str(np_penalty)
        self.np_eps = np_eps
        if np_beta > 0 and self.np_penalty == "neuroprune" and self.np_eps is None:
            raise ValueError("--np-beta > 0 needs --task neuroprune_translation (it defines --np-eps, the near-zero threshold)")

    def forward(self, model, sample, reduce=True):
        loss, sample_size, logging_output = super().forward(model, sample, reduce=reduce)
        if model.training and (self.np_alpha > 0 or self.np_beta > 0):
            r_attn, r_mlp = model_penalties(model, self.np_eps or 0.0, self.np_penalty)
            loss = loss + sample_size * (self.np_alpha * r_attn + self.np_beta * r_mlp)
            logging_output["np_attn"] = r_attn.detach() * sample_size
            logging_output["np_mlp"] = r_mlp.detach() * sample_size
        return loss, sample_size, logging_output

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        logged = [log for log in logging_outputs if "np_attn" in log]
        if not logged:
            return
        sample_size = sum(log.get("sample_size", 0) for log in logged)
        for key in ("np_attn", "np_mlp"):
            total = utils.item(sum(log[key] for log in logged))
            metrics.log_scalar(key, total / max(sample_size, 1), sample_size, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
