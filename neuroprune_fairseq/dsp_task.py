"""The ``dsp_translation`` task: translation with the learned head gates of Differentiable Subset
Pruning (Li, Cotterell and Sachan, TACL 2021), run the way its authors' code runs it
(rycolab/differentiable-subset-pruning). Each default below follows that code; every one is a flag.

* Gate learning for the first ``--np-dsp-anneal-updates`` updates: the temperature falls exponentially
  from 0.1 to 1e-8, the relaxation runs in float64 (so the gates end exactly 0/1 with an exactly zero
  gradient), the logits start from a seeded xavier-uniform-like draw and learn with their own AdamW
  (lr 0.2 constant, decoupled weight decay 1e-4). ``--np-dsp-mode joint`` trains the weights at the
  same time; ``pipelined`` leaves every model parameter untouched (fairseq's optimizer step is
  skipped) while the gates learn.
* Then the hard top-K is fixed (:meth:`DSPGates.freeze`): the rest of the run trains the model under
  exactly the mask that validation, checkpoints and export use, and the logits no longer move.
  (The authors' code keeps drawing Gumbel noise at temperature 1e-8 after its anneal, so its training
  mask is the hard top-K of the logits only where their gaps dwarf the noise; here it is that mask.)

One deliberate difference: the mask keeps at least one head in every attention module, in the
training relaxation as in the hard mask (the authors allow a module to lose all its heads, in both).
The other methods of this plugin (NeuroPrune's budget, Michel) keep the same floor, so the comparison
is at equal structure, and a module without heads would break the shared mask buffers, export and
fairseq's attention modules.

Diagnostics in fairseq's training log lines: ``np_dsp_tau`` (the temperature), ``np_dsp_fractional``
(share of the training gates strictly between 0.01 and 0.99, averaged over the interval) and
``np_dsp_topk_changes`` (heads that entered the hard top-K, summed over the updates since the last log
line; 0 from the anneal's end on).

Without ``--np-dsp-heads`` the task is plain ``translation`` with the plugin's head-mask buffers (for
instance to generate from any of the plugin's checkpoints).
"""
import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq import metrics
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationTask

from neuroprune.core.dsp import fractional_share
from neuroprune.state_keys import short_name

from . import head_masks
from .dsp_gates import DSPGates
from .optim_sync import copy_model_params_to_master
from .sparse_training import SparseTrainingConfig, WeightSparsity

logger = logging.getLogger(__name__)

MODES = ChoiceEnum(["joint", "pipelined"])
INITS = ChoiceEnum(["xavier", "zeros"])


@dataclass
class DSPTranslationConfig(SparseTrainingConfig):
    np_dsp_heads: Optional[int] = field(
        default=None,
        metadata={"help": "heads to keep (K) over all attention modules, at least one in each (in training and evaluation alike, "
                          "unlike the authors' code, so that every method of the plugin keeps the same structure); "
                          "unset = no DSP gates (plain translation with head masks)"},
    )
    np_dsp_per_module: bool = field(
        default=False,
        metadata={"help": "keep K / (attention modules) heads in every module instead of the best K over the whole model"},
    )
    np_dsp_mode: MODES = field(
        default="joint",
        metadata={"help": "'joint': the model's weights train while the gates learn (the authors' joint recipe); 'pipelined': "
                          "every model parameter stays exactly as loaded while the gates learn (the authors' pipelined recipe); "
                          "both then train the model under the fixed hard top-K for the rest of the run"},
    )
    np_dsp_anneal_updates: int = field(
        default=250,
        metadata={"help": "updates of gate learning, over which the temperature falls exponentially from --np-dsp-temp-init to "
                          "--np-dsp-temp-final; from then on the hard top-K is fixed (the authors: 250 in their pipelined recipe, "
                          "15,000 of about 66,000 in their joint recipe)"},
    )
    np_dsp_temp_init: float = field(
        default=0.1,
        metadata={"help": "temperature of the Gumbel soft top-K at update 0"},
    )
    np_dsp_temp_final: float = field(
        default=1e-8,
        metadata={"help": "temperature reached at the end of gate learning; at 1e-8 the float64 relaxation is exactly 0/1"},
    )
    np_dsp_lr: float = field(
        default=0.2,
        metadata={"help": "constant learning rate of the gate logits' own AdamW (betas 0.9, 0.98; not scheduled with --lr)"},
    )
    np_dsp_weight_decay: float = field(
        default=1e-4,
        metadata={"help": "decoupled (AdamW) weight decay of the gate logits; 0 disables it"},
    )
    np_dsp_init: INITS = field(
        default="xavier",
        metadata={"help": "initial gate logits: 'xavier' (a U(-b, b) draw seeded by --np-dsp-seed, b = sqrt(6 / (modules + heads per "
                          "module)), as the authors) or 'zeros'"},
    )
    np_dsp_straight_through: bool = field(
        default=False,
        metadata={"help": "the authors' straight-through gates: the hard top-K of the raw logits (no noise, no temperature) in the "
                          "forward pass, the identity in the backward pass"},
    )
    np_dsp_seed: int = field(
        default=1,
        metadata={"help": "seed of the initial logits and of the Gumbel noise, which depends on this seed and the update number only "
                          "(identical on all ranks and on resume)"},
    )


def _check_flags(cfg) -> None:
    """Clear errors for DSP flags that cannot work (K against the model is checked once it exists)."""
    if cfg.np_dsp_heads is None:
        return
    for flag, value in (("--np-dsp-lr", cfg.np_dsp_lr), ("--np-dsp-temp-init", cfg.np_dsp_temp_init),
                        ("--np-dsp-temp-final", cfg.np_dsp_temp_final)):
        if not value > 0:
            raise ValueError(f"{flag} must be > 0, got {value}")
    if not cfg.np_dsp_weight_decay >= 0:
        raise ValueError(f"--np-dsp-weight-decay must be >= 0, got {cfg.np_dsp_weight_decay}")
    if cfg.np_dsp_anneal_updates < 1:
        raise ValueError(f"--np-dsp-anneal-updates must be >= 1 (updates of gate learning), got {cfg.np_dsp_anneal_updates}")


def _skip_model_step(optimizer) -> None:
    """Leave the model's parameters and optimizer state as they are this update. An AMP grad scaler
    still needs its update() after the unscale_() of fairseq's gradient clipping."""
    scaler = getattr(optimizer, "_grad_scaler", None)
    if scaler is not None:
        scaler.update()


@register_task("dsp_translation", dataclass=DSPTranslationConfig)
class DSPTranslationTask(TranslationTask):
    """``translation`` plus head masks and, with ``--np-dsp-heads``, DSP's gates (see the module docstring)."""

    def __init__(self, cfg: DSPTranslationConfig, src_dict, tgt_dict):
        _check_flags(cfg)
        super().__init__(cfg, src_dict, tgt_dict)
        self.dsp: Optional[DSPGates] = None
        self.weight_sparsity = WeightSparsity(cfg)

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        head_masks.attach(model)
        if self.cfg.np_dsp_heads is not None:
            try:
                self.dsp = DSPGates(model, self.cfg)
            except ValueError as err:
                per_module = " with --np-dsp-per-module" if self.cfg.np_dsp_per_module else ""
                raise ValueError(f"--np-dsp-heads {self.cfg.np_dsp_heads}{per_module}: {err}") from err
        return model

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        dsp = self.dsp
        if dsp is not None and update_num >= dsp.anneal_updates:
            self._freeze(update_num, optimizer)  # no-op once fixed; after a resume, fixes the saved mask again
        learning = dsp is not None and not dsp.frozen
        if dsp is not None:
            share = fractional_share(dsp.begin_update(update_num)) if learning else 0.0  # the fixed mask is 0/1
            metrics.log_scalar("np_dsp_tau", dsp.temperature(update_num), weight=0)
            metrics.log_scalar("np_dsp_fractional", share, round=3)
        loss, sample_size, logging_output = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        if learning and not ignore_grad:
            dsp.add_sample_size(sample_size)
        return loss, sample_size, logging_output

    def optimizer_step(self, optimizer, model, update_num):
        dsp = self.dsp
        learning = dsp is not None and not dsp.frozen
        model_steps = not (learning and self.cfg.np_dsp_mode == "pipelined")
        if model_steps:
            self.weight_sparsity.before_update(model)
            super().optimizer_step(optimizer, model, update_num)
        else:
            _skip_model_step(optimizer)
        if dsp is not None:
            changes = 0
            if learning:
                before = dsp.hard_mask()
                dsp.step(optimizer)
                changes = int((dsp.hard_mask() > before).sum())
                if update_num + 1 >= dsp.anneal_updates:
                    self._freeze(update_num + 1, optimizer)
            else:
                head_masks.enforce(model)  # undo optimizer drift (momentum) on the pruned heads
                copy_model_params_to_master(optimizer)
            metrics.log_scalar_sum("np_dsp_topk_changes", changes)
        if model_steps:  # after the freeze, so that a pruning step of that update counts the heads it keeps
            self.weight_sparsity.after_update(model, optimizer, update_num, optimizer.get_lr())

    def _freeze(self, updates: int, optimizer) -> None:
        if self.dsp.frozen:
            return
        self.dsp.freeze()
        copy_model_params_to_master(optimizer)
        self._log_heads(f"after {updates} updates: gate learning over, the hard top-{self.cfg.np_dsp_heads} is fixed")

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        if self.dsp is not None:
            phase = "fixed" if self.dsp.frozen else "gates learning"
            self._log_heads(f"epoch {epoch:03d} | DSP hard top-{self.cfg.np_dsp_heads} of the gate logits (what checkpoints hold), {phase}")

    def _log_heads(self, what: str) -> None:
        kept = self.dsp.heads_per_module()
        logger.info(f"dsp | {what} | heads kept {sum(kept.values())}/{sum(self.dsp.sizes)}")
        logger.info("dsp | heads kept per module: " + " ".join(f"{short_name(n)}={k}" for n, k in kept.items()))

