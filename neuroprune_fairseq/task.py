"""Translation task that runs NeuroPrune's redundant-head elimination after every training epoch.

Timing: fairseq has no end-of-epoch hook, so the task remembers the training split's
``EpochBatchIterator`` and checks ``end_of_epoch()`` in ``optimizer_step`` — i.e. right after the
epoch's last update and before ``validate_and_save`` runs that epoch's validation and checkpoint save.
That also holds with ``--disable-validation``. The last epoch that was pruned is a model buffer
(``np_last_pruned_epoch``), so it travels in checkpoints (fairseq-train does not restore
``task_state`` on resume) and a pass never runs twice for the same epoch.
"""
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import metrics
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationTask

from neuroprune.checkpoint_stats import weight_sparsity
from neuroprune.core.budget import scheduled_target
from neuroprune.core.sparsity import NEAR_ZERO_EPS
from neuroprune.state_keys import PRUNED_EPOCH_BUFFER, short_name

from . import head_masks
from .calibration import calibration_batches, head_output_stats
from .model_parts import attention_modules, unwrap
from .optim_sync import copy_model_params_to_master
from .rank_check import check_identical_across_ranks
from .sparse_training import SparseTrainingConfig, WeightSparsity

logger = logging.getLogger(__name__)


class BFloat16Autocast:
    """A criterion whose forward (``criterion(model, sample)``, the model's forward included) runs under CPU
    bfloat16 autocast; fairseq's ``train_step`` then runs the backward outside it, as PyTorch advises."""

    def __init__(self, criterion):
        self.criterion = criterion

    def __call__(self, model, sample):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.criterion(model, sample)


@dataclass
class NeuroPruneTranslationConfig(SparseTrainingConfig):
    np_theta: Optional[float] = field(
        default=None,
        metadata={"help": "l_inf distance at or below which two heads are similar and the dominated one is pruned after each epoch; unset = no head elimination"},
    )
    np_eps: float = field(
        default=NEAR_ZERO_EPS,
        metadata={"help": "|w| below this counts as zero: the MLP penalty's near-zero count and the reported weight sparsity"},
    )
    np_head_budget: Optional[int] = field(
        default=None,
        metadata={"help": "total heads to keep over all attention modules: each pass chooses its theta to approach this number, never going below it (instead of --np-theta)"},
    )
    np_budget_passes: int = field(
        default=1,
        metadata={"help": "passes over which --np-head-budget is approached linearly from all heads (1: the first pass aims at the budget)"},
    )
    np_exact_budget: bool = field(
        default=False,
        metadata={"help": "with --np-head-budget: every pass keeps exactly its scheduled head count (the smallest theta "
                          "that reaches it, then the pruned heads farthest from their keepers stay active, unfolded); "
                          "without it a pass keeps the fewest heads at or above its target that one theta gives"},
    )
    np_prune_start_epoch: int = field(
        default=1,
        metadata={"help": "first epoch after which heads are eliminated (earlier epochs only train, e.g. pretraining)"},
    )
    np_similarity: ChoiceEnum(head_masks.SIMILARITIES) = field(
        default="linf",
        metadata={"help": "how the elimination pass compares heads: linf = the paper's l_inf distance of the [Q, K, V] weights; "
                          "linf_scaled = the same after dividing each head's weights by their largest magnitude; output = how badly "
                          "one head's output predicts the other's on calibration data (relative least-squares error, 0 to about 1)"},
    )
    np_keep: ChoiceEnum(head_masks.KEEP_RULES) = field(
        default="paper",
        metadata={"help": "which head of a similar group stays: paper = the dominating head of Algorithm 3 (later index on ties); "
                          "importance = the head with the largest output variance on calibration data"},
    )
    np_fold: ChoiceEnum(head_masks.FOLDS) = field(
        default="paper",
        metadata={"help": "what happens to a pruned head's out-projection: paper = added to the kept head's columns (plus the "
                          "value-bias difference, exact for identical heads); none = dropped (mask only); data = a least-squares "
                          "map from the kept head's output to the pruned one's, fitted on calibration data"},
    )
    np_fold_ridge: float = field(
        default=0.01,
        metadata={"help": "ridge of --np-fold data (and --np-similarity output) fits, relative to the larger output variance of the two heads; "
                          "it pulls the map towards the paper's identity fold"},
    )
    np_calib_subset: str = field(
        default="train",
        metadata={"help": "split whose sentences calibrate the data-aware pass variants (--np-similarity output, --np-keep "
                          "importance, --np-fold data)"},
    )
    np_calib_sentences: int = field(
        default=256,
        metadata={"help": "calibration sentences (a seeded random choice of --np-calib-subset, the same in every pass and rank)"},
    )
    np_calib_max_tokens: int = field(
        default=4096,
        metadata={"help": "tokens per calibration batch"},
    )
    np_cpu_bf16_autocast: bool = field(
        default=False,
        metadata={"help": "run each training forward under torch.autocast('cpu', bfloat16): matmuls in bfloat16, weights, "
                          "optimizer and penalties in float32 (a faster CPU training path; validation stays float32)"},
    )


@register_task("neuroprune_translation", dataclass=NeuroPruneTranslationConfig)
class NeuroPruneTranslationTask(TranslationTask):
    """``translation`` plus head masks in the model and per-epoch redundancy elimination."""

    def __init__(self, cfg: NeuroPruneTranslationConfig, src_dict, tgt_dict):
        if cfg.np_theta is not None and cfg.np_theta < 0:
            raise ValueError(f"--np-theta must be >= 0 (or unset to disable elimination), got {cfg.np_theta}")
        if cfg.np_eps <= 0:
            raise ValueError(f"--np-eps must be > 0, got {cfg.np_eps}")
        if cfg.np_head_budget is not None and cfg.np_theta is not None:
            raise ValueError("--np-head-budget chooses theta for each pass: do not also give --np-theta")
        if cfg.np_head_budget is not None and cfg.np_head_budget < 1:
            raise ValueError(f"--np-head-budget must be >= 1, got {cfg.np_head_budget}")
        if cfg.np_exact_budget and cfg.np_head_budget is None:
            raise ValueError("--np-exact-budget needs --np-head-budget (the head count each pass keeps exactly)")
        if cfg.np_budget_passes < 1:
            raise ValueError(f"--np-budget-passes must be >= 1, got {cfg.np_budget_passes}")
        if cfg.np_prune_start_epoch < 1:
            raise ValueError(f"--np-prune-start-epoch must be >= 1, got {cfg.np_prune_start_epoch}")
        if cfg.np_calib_sentences < 1 or cfg.np_calib_max_tokens < 1:
            raise ValueError(f"--np-calib-sentences and --np-calib-max-tokens must be >= 1, got {cfg.np_calib_sentences} and {cfg.np_calib_max_tokens}")
        if not cfg.np_fold_ridge >= 0:
            raise ValueError(f"--np-fold-ridge must be >= 0, got {cfg.np_fold_ridge}")
        self.pass_variant = head_masks.PassVariant(str(cfg.np_similarity), str(cfg.np_keep), str(cfg.np_fold), cfg.np_fold_ridge)
        self._calibration = None  # the calibration batches, chosen at the first data-aware pass
        self.weight_sparsity = WeightSparsity(cfg)
        super().__init__(cfg, src_dict, tgt_dict)
        self._train_epoch_itr = None
        self._epochs_begun = set()  # epochs started in this process
        self._epochs_ended = set()  # epochs whose end-of-epoch step ran in this process

    def build_model(self, cfg, from_checkpoint=False):
        for side in ("encoder", "decoder"):
            dim, heads = getattr(cfg, f"{side}_embed_dim", None), getattr(cfg, f"{side}_attention_heads", None)
            if dim and heads and dim % heads:
                raise ValueError(f"--{side}-attention-heads {heads} must divide --{side}-embed-dim {dim} (heads are equal slices)")
        model = super().build_model(cfg, from_checkpoint)
        head_masks.attach(model)
        budget, modules = self.cfg.np_head_budget, len(attention_modules(model))
        if budget is not None and not modules <= budget <= head_masks.total_heads(model):
            raise ValueError(
                f"--np-head-budget {budget} is outside what this model allows: at least one head in each of its "
                f"{modules} attention modules, at most its {head_masks.total_heads(model)} heads"
            )
        return model

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if self.cfg.np_cpu_bf16_autocast:
            criterion = BFloat16Autocast(criterion)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def get_batch_iterator(self, dataset, *args, **kwargs):
        epoch_itr = super().get_batch_iterator(dataset, *args, **kwargs)
        if dataset is self.datasets.get(self.cfg.train_subset):
            self._train_epoch_itr = epoch_itr
        return epoch_itr

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        root = unwrap(model)
        pruned = int(getattr(root, PRUNED_EPOCH_BUFFER))
        if pruned >= epoch:  # a new run (e.g. --reset-dataloader fine-tuning) restarted the epoch count
            logger.info(f"neuroprune | epoch count restarted at {epoch}: earlier passes (up to epoch {pruned}) belong to the previous run")
            getattr(root, PRUNED_EPOCH_BUFFER).fill_(epoch - 1)
        elif epoch - 1 in self._epochs_begun and epoch - 1 not in self._epochs_ended:
            # The previous epoch's last update was skipped (OOM / overflow), so its pass never ran.
            logger.warning(f"neuroprune | running the elimination of epoch {epoch - 1} late, before epoch {epoch}")
            self._end_of_epoch(epoch - 1, model, optimizer=None)
        self._epochs_begun.add(epoch)

    def optimizer_step(self, optimizer, model, update_num):
        self.weight_sparsity.before_update(model)
        super().optimizer_step(optimizer, model, update_num)
        if any(not bool(head_masks.head_mask(attn).all()) for _, attn in attention_modules(model)):
            head_masks.enforce(model)  # undo optimizer drift (momentum, weight decay) on pruned heads
            copy_model_params_to_master(optimizer)
        self.weight_sparsity.after_update(model, optimizer, update_num, optimizer.get_lr())
        if self._train_epoch_itr is not None and self._train_epoch_itr.end_of_epoch():
            self._end_of_epoch(self._train_epoch_itr.epoch, model, optimizer)

    def _end_of_epoch(self, epoch: int, model, optimizer) -> None:
        """Run the epoch's elimination pass once (if enabled and due) and log heads and sparsity."""
        counter = getattr(unwrap(model), PRUNED_EPOCH_BUFFER)
        if epoch in self._epochs_ended or int(counter) >= epoch:
            return
        self._epochs_ended.add(epoch)
        theta, budget = self.cfg.np_theta, self.cfg.np_head_budget
        plans = {}
        if (theta is not None or budget is not None) and epoch >= self.cfg.np_prune_start_epoch:
            if budget is not None:
                theta, plans = self._budget_pass(epoch, model)
            else:
                plans = head_masks.eliminate(model, theta, self.pass_variant, self._head_stats(model))
            if optimizer is not None:
                copy_model_params_to_master(optimizer)
            counter.fill_(epoch)
            ranks = check_identical_across_ranks(unwrap(model))
            if ranks > 1:
                logger.info(f"neuroprune | masks and parameters identical on all {ranks} ranks after the pass")
        self._log_epoch(epoch, model, theta if plans else None, plans)

    def _head_stats(self, model):
        """Head-output statistics on the calibration sentences, when the pass variant needs them (else None)."""
        if not self.pass_variant.needs_data:
            return None
        start = time.perf_counter()
        if self._calibration is None:
            self._calibration = calibration_batches(self, model, self.cfg.np_calib_subset, self.cfg.np_calib_sentences,
                                                    self.cfg.np_calib_max_tokens)
        stats = head_output_stats(model, self._calibration)
        sentences = sum(len(b["id"]) for b in self._calibration)
        logger.info(f"neuroprune | calibration: {sentences} sentences of '{self.cfg.np_calib_subset}' in {time.perf_counter() - start:.1f}s")
        return stats

    def _budget_pass(self, epoch: int, model):
        """One pass aiming at this epoch's scheduled head count; returns (theta used or None, plans)."""
        budget = self.cfg.np_head_budget
        pass_index = epoch - self.cfg.np_prune_start_epoch + 1
        target = scheduled_target(head_masks.total_heads(model), budget, pass_index, self.cfg.np_budget_passes)
        choice, plans = head_masks.eliminate_to_budget(model, target, budget, self.pass_variant, self._head_stats(model),
                                                        exact=self.cfg.np_exact_budget)
        chosen = "no theta fits" if choice.theta is None else f"theta {choice.theta:.4f} chosen"
        logger.info(f"neuroprune | epoch {epoch:03d} | head budget {budget}: this pass aims at {target} heads, {chosen}")
        if not choice.reached:
            logger.warning(
                f"neuroprune | epoch {epoch:03d} | head budget: {target} heads not reachable this pass without going "
                f"below {budget}; keeping {choice.kept} (pruning removes whole dominated groups at once)"
            )
        return choice.theta, plans

    def _log_epoch(self, epoch: int, model, theta, plans) -> None:
        kept = head_masks.heads_kept(model)
        total_kept, total = sum(kept.values()), head_masks.total_heads(model)
        sparsity = weight_sparsity(unwrap(model).state_dict(), self.cfg.np_eps)
        pruned_now = sum(len(p.pruned) for p in plans.values())
        action = f"theta {theta:g}, pruned {pruned_now} heads" if theta is not None else "no elimination"
        logger.info(f"neuroprune | epoch {epoch:03d} | {action} | heads kept {total_kept}/{total} | weight sparsity {sparsity:.4f}")
        logger.info("neuroprune | heads kept per module: " + " ".join(f"{short_name(n)}={k}" for n, k in kept.items()))
        if plans:
            logger.info(
                "neuroprune | min head distance per module: "
                + " ".join(f"{short_name(n)}={p.min_distance:.3f}" for n, p in plans.items())
            )
        with metrics.aggregate("train", new_root=True):  # the epoch summary only, not later train_inner lines
            metrics.log_scalar("np_heads", total_kept, round=0)
            metrics.log_scalar("np_sparsity", sparsity, round=4)
