"""DSP head gates inside a fairseq model (the glue around :mod:`core.dsp`).

Two phases, split at update ``--np-dsp-anneal-updates``:

* Gate learning. Gate values scale each head's output just before the out-projection (a forward
  pre-hook on ``out_proj``; the gated modules use fairseq's own slow attention path,
  ``skip_embed_dim_check``, which calls ``out_proj`` as a module). Training forwards use the
  relaxation of the Gumbel-perturbed logits (or the straight-through hard top-K of the raw logits);
  evaluation forwards (``model.eval()``: validation, generation) use the hard top-K of the logits.
  The logits are one float64 vector over all heads, outside the model: fairseq's optimizer and lr
  scheduler never see them. They have their own AdamW (constant lr, decoupled weight decay, betas
  (0.9, 0.98)), gradients normalised by the update's summed ``sample_size`` like the model's (and
  summed over ranks).
* Fixed mask. :meth:`DSPGates.freeze` writes the hard top-K into the ``np_head_mask`` buffers and
  zeroes the pruned heads (:func:`head_masks.enforce`); the hooks stop, the fast attention path comes
  back and the logits no longer move. The model then trains, validates, is saved and exported under
  that one mask, like a NeuroPrune or Michel mask.

Checkpoints: a state-dict hook writes the hard top-K into the ``np_head_mask`` entries of the saved
state (during gate learning the live model keeps all heads) and adds the logits (``np_dsp_logits``)
and their AdamW state (``np_dsp_adam_*``). Loading such a checkpoint under another task (generation,
export, another method) applies the hard mask and drops the ``np_dsp_*`` entries
(:mod:`head_masks`); resuming DSP training restores the logits and the AdamW state and sets the live
masks to all ones until the task freezes the mask again (at the first update past the anneal).
"""
from typing import Dict, Optional

import torch

from neuroprune.core.dsp import annealed_temperature, gumbel_noise, relaxed_top_k, straight_through, xavier_logits
from neuroprune.core.selection import keep_top_k, module_slices
from neuroprune.state_keys import DSP_LOGITS_KEY, DSP_STATE_PREFIX, MASK_BUFFER

from .head_masks import DSP_ROOT_FLAG, enforce
from .model_parts import attention_modules, unwrap

ADAM_KEYS = {name: f"{DSP_STATE_PREFIX}adam_{name}" for name in ("step", "exp_avg", "exp_avg_sq")}
ADAM_BETAS = (0.9, 0.98)  # the authors' logits share the model's fairseq Adam: --adam-betas '(0.9, 0.98)'


def _loss_scale(optimizer) -> float:
    """The fp16/AMP loss scale the backward pass was multiplied by (1 without one)."""
    scaler = getattr(optimizer, "scaler", None)
    if scaler is not None and getattr(scaler, "loss_scale", None):
        return float(scaler.loss_scale)
    amp_scaler = getattr(optimizer, "_grad_scaler", None)
    return float(amp_scaler.get_scale()) if amp_scaler is not None else 1.0


class DSPGates:
    """Learnable per-head gates: a Gumbel soft top-K while they learn, then a fixed hard top-K.

    Args:
        model: a fairseq model with head masks attached (:func:`head_masks.attach`).
        cfg: the ``dsp_translation`` task config (its ``np_dsp_*`` fields, see :mod:`dsp_task`).
    Raises:
        ValueError: when ``cfg.np_dsp_heads`` cannot be kept under the one-head-per-module rule.
    """

    def __init__(self, model, cfg):
        self.modules = attention_modules(model)
        self.sizes = [attn.num_heads for _, attn in self.modules]
        self.slices = module_slices(self.sizes)
        self.k, self.per_module = cfg.np_dsp_heads, cfg.np_dsp_per_module
        keep_top_k(torch.zeros(sum(self.sizes)), self.sizes, self.k, self.per_module)  # validates k early
        self.straight_through, self.seed = cfg.np_dsp_straight_through, cfg.np_dsp_seed
        self.anneal_updates = cfg.np_dsp_anneal_updates
        self.schedule = (cfg.np_dsp_temp_init, cfg.np_dsp_temp_final, cfg.np_dsp_anneal_updates)
        device = self.modules[0][1].q_proj.weight.device
        generator = torch.Generator().manual_seed(self.seed)
        init = xavier_logits(self.sizes, generator) if cfg.np_dsp_init == "xavier" else torch.zeros(sum(self.sizes), dtype=torch.float64)
        self.logits = init.to(device).requires_grad_(True)  # (N,)
        self.optimizer = torch.optim.AdamW([self.logits], lr=cfg.np_dsp_lr, betas=ADAM_BETAS, weight_decay=cfg.np_dsp_weight_decay)
        self.frozen = False
        self.gates: Optional[torch.Tensor] = None  # (N,) training gates of the current update
        self._update: Optional[int] = None
        self._sample_size = 0.0
        self._hard: Optional[tuple] = None  # (logits version, mask) cache of hard_mask()
        for j, (_, attn) in enumerate(self.modules):
            attn.skip_embed_dim_check = True  # fairseq's slow path, which calls out_proj as a module
            attn.out_proj.register_forward_pre_hook(self._gate_hook(j, attn.head_dim))
        self.root = unwrap(model)
        setattr(self.root, DSP_ROOT_FLAG, True)
        self.root._register_state_dict_hook(self._save_hook)
        self.root._register_load_state_dict_pre_hook(self._load_hook)

    def _gate_hook(self, j: int, head_dim: int):
        def scale_heads(module, args):
            if self.frozen:
                return None  # the mask is in the buffers and the zeroed weights
            gates = self.gates if module.training and self.gates is not None else self.hard_mask()
            x = args[0]  # (T, B, H*d)
            gate = gates[self.slices[j]].to(x.dtype)  # (H,)
            heads = x.reshape(*x.shape[:-1], -1, head_dim) * gate[:, None]  # (T, B, H, d)
            return (heads.reshape(x.shape),) + tuple(args[1:])
        return scale_heads

    def temperature(self, update_num: int) -> float:
        return annealed_temperature(update_num, *self.schedule)

    def begin_update(self, update_num: int) -> torch.Tensor:
        """Set the training gates of update ``update_num`` (identical for all its micro-batches and on
        every rank: the noise depends on the seed and the update only) and return them; a new update
        clears the gradient accumulators."""
        if update_num != self._update:
            self._update, self._sample_size = update_num, 0.0
            self.logits.grad = None
        if self.straight_through:
            self.gates = straight_through(self.logits, self.hard_mask())
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + update_num)
            scores = self.logits + gumbel_noise(self.logits.shape, generator).to(self.logits.device)  # (N,)
            self.gates = relaxed_top_k(scores, self.sizes, self.k, self.temperature(update_num), self.per_module)
        return self.gates

    def add_sample_size(self, sample_size) -> None:
        self._sample_size += float(sample_size)

    def hard_mask(self) -> torch.Tensor:
        """(N,) 0/1 float64: the K heads with the highest logits, at least one per module (no noise)."""
        version = self.logits._version
        if self._hard is None or self._hard[0] != version:
            self._hard = (version, keep_top_k(self.logits.detach(), self.sizes, self.k, self.per_module).double())
        return self._hard[1]

    def step(self, optimizer) -> bool:
        """One AdamW step on the logits from the update's accumulated gradient; False when skipped
        (no gradient, or a non-finite one, e.g. an fp16 overflow). Clears the training gates."""
        self.gates = None
        grad = self.logits.grad
        if grad is None:
            return False
        total = torch.cat([grad.detach().flatten(), grad.new_tensor([self._sample_size])])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(total)
        grad = total[:-1] / (max(float(total[-1]), 1.0) * _loss_scale(optimizer))
        self.logits.grad = None
        if not bool(torch.isfinite(grad).all()):
            return False
        self.logits.grad = grad
        self.optimizer.step()
        self.logits.grad = None
        return True

    @torch.no_grad()
    def freeze(self) -> None:
        """End gate learning: the hard top-K becomes the model's head masks, pruned heads are zeroed,
        the hooks stop and the fused attention path is used again. Idempotent."""
        if self.frozen:
            return
        mask = self.hard_mask()
        for (_, attn), s in zip(self.modules, self.slices):
            getattr(attn, MASK_BUFFER).copy_(mask[s])
            attn.skip_embed_dim_check = False
        enforce(self.root)
        self.frozen, self.gates, self.logits.grad = True, None, None

    def heads_per_module(self) -> Dict[str, int]:
        mask = self.hard_mask()
        return {name: int(mask[s].sum()) for (name, _), s in zip(self.modules, self.slices)}

    def _save_hook(self, _module, state_dict, prefix, _local_metadata):
        mask = self.hard_mask().cpu()
        for (name, _), s in zip(self.modules, self.slices):
            key = f"{prefix}{name}.{MASK_BUFFER}"
            state_dict[key] = mask[s].to(state_dict[key].dtype)
        state_dict[prefix + DSP_LOGITS_KEY] = self.logits.detach().cpu().clone()
        adam = self.optimizer.state.get(self.logits, {})
        for name, key in ADAM_KEYS.items():
            if name in adam:
                state_dict[prefix + key] = adam[name].detach().cpu().clone()

    def _load_hook(self, state_dict, prefix, *_args):
        logits = state_dict.pop(prefix + DSP_LOGITS_KEY, None)
        adam = {name: state_dict.pop(prefix + key) for name, key in ADAM_KEYS.items() if prefix + key in state_dict}
        if logits is not None:
            if tuple(logits.shape) != tuple(self.logits.shape):
                raise ValueError(f"checkpoint {DSP_LOGITS_KEY} has shape {tuple(logits.shape)}, the model has {sum(self.sizes)} heads")
            with torch.no_grad():
                self.logits.copy_(logits)
        if adam:
            if set(adam) != set(ADAM_KEYS):
                raise ValueError(f"checkpoint has the DSP AdamW entries {sorted(adam)}, expected all of {sorted(ADAM_KEYS)}")
            groups = self.optimizer.state_dict()["param_groups"]  # this run's lr and weight decay
            self.optimizer.load_state_dict({"state": {0: adam}, "param_groups": groups})
        for name, _ in self.modules:  # every head is live until the task freezes the mask again
            key = f"{prefix}{name}.{MASK_BUFFER}"
            if key in state_dict:
                state_dict[key] = torch.ones_like(state_dict[key])
