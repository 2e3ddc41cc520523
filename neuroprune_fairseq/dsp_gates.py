"""DSP head gates inside a fairseq model (the glue around :mod:`core.dsp`).

* Gate values scale each head's output just before the out-projection (a forward pre-hook on
  ``out_proj``). fairseq's fused attention fast path never calls ``out_proj`` as a module, so the
  gated modules are switched to fairseq's own slow path (``skip_embed_dim_check``, the switch fairseq
  uses for its pruned heads); every attention call is gated.
* The logits are one float32 vector over all heads, outside the model: fairseq's optimizer and lr
  scheduler never see them. They have their own Adam with a constant learning rate, gradients
  normalised by the update's summed ``sample_size`` like the model's (and summed over ranks).
* Checkpoints: a state-dict hook writes the hard top-K of the logits into the ``np_head_mask``
  buffers of the saved state (the live model keeps all heads while it trains) and the logits under
  ``np_dsp_logits``. Loading such a checkpoint anywhere else (generation, export, another method's
  fine-tuning) applies the hard mask like a NeuroPrune mask and drops the logits; resuming DSP
  training restores the logits and trains all heads on.
"""
from typing import Dict, Optional

import torch

from .core.dsp import annealed_temperature, gumbel_noise, relaxed_mask
from .core.selection import keep_top_k, module_slices
from .head_masks import DSP_LOGITS_KEY, DSP_ROOT_FLAG, MASK_BUFFER
from .model_parts import attention_modules, unwrap


def _loss_scale(optimizer) -> float:
    """The fp16/AMP loss scale the backward pass was multiplied by (1 without one)."""
    scaler = getattr(optimizer, "scaler", None)
    if scaler is not None and getattr(scaler, "loss_scale", None):
        return float(scaler.loss_scale)
    amp_scaler = getattr(optimizer, "_grad_scaler", None)
    return float(amp_scaler.get_scale()) if amp_scaler is not None else 1.0


class DSPGates:
    """Learnable per-head gates with a Gumbel soft top-K during training and a hard top-K in checkpoints.

    Args:
        model: a fairseq model with head masks attached (:func:`head_masks.attach`).
        k: heads to keep in total (with ``per_module``: split evenly over the modules).
        per_module: select ``k / modules`` heads in every module instead of the best ``k`` overall.
        lr: Adam learning rate of the logits (constant).
        temp_init, temp_final, anneal_updates: exponential temperature schedule over updates.
        straight_through: hard top-K forward, relaxed gradient.
        seed: base seed of the Gumbel noise (noise depends on (seed, update) only: identical on all
            ranks and micro-batches of an update, and reproducible on resume).
    """

    def __init__(self, model, k: int, per_module: bool, lr: float, temp_init: float, temp_final: float,
                 anneal_updates: int, straight_through: bool, seed: int):
        self.modules = attention_modules(model)
        self.sizes = [attn.num_heads for _, attn in self.modules]
        self.slices = module_slices(self.sizes)
        keep_top_k(torch.zeros(sum(self.sizes)), self.sizes, k, per_module)  # validates k early
        self.k, self.per_module, self.straight_through, self.seed = k, per_module, straight_through, seed
        self.schedule = (temp_init, temp_final, anneal_updates)
        device = self.modules[0][1].q_proj.weight.device
        self.logits = torch.zeros(sum(self.sizes), device=device, requires_grad=True)  # (N,)
        self.optimizer = torch.optim.Adam([self.logits], lr=lr)
        self.gates: Optional[torch.Tensor] = None  # (N,) values used by the next forward; None = ungated
        self._update: Optional[int] = None
        self._sample_size = 0.0
        for j, (_, attn) in enumerate(self.modules):
            attn.skip_embed_dim_check = True  # fairseq's slow path, which calls out_proj as a module
            attn.out_proj.register_forward_pre_hook(self._gate_hook(j, attn.head_dim))
        root = unwrap(model)
        setattr(root, DSP_ROOT_FLAG, True)
        root._register_state_dict_hook(self._save_hook)
        root._register_load_state_dict_pre_hook(self._load_hook)

    def _gate_hook(self, j: int, head_dim: int):
        def scale_heads(_module, args):
            if self.gates is None:
                return None
            x = args[0]  # (T, B, H*d)
            gate = self.gates[self.slices[j]].to(x.dtype)  # (H,)
            heads = x.reshape(*x.shape[:-1], -1, head_dim) * gate[:, None]  # (T, B, H, d)
            return (heads.reshape(x.shape),) + tuple(args[1:])
        return scale_heads

    def temperature(self, update_num: int) -> float:
        return annealed_temperature(update_num, *self.schedule)

    def sample(self, update_num: int) -> None:
        """Set relaxed gates for one training forward; a new update clears the gradient accumulators."""
        if update_num != self._update:
            self._update, self._sample_size = update_num, 0.0
            self.logits.grad = None
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + update_num)
        scores = self.logits + gumbel_noise(self.logits.shape, generator).to(self.logits.device)  # (N,)
        tau = self.temperature(update_num)
        if self.per_module:
            k_each = self.k // len(self.sizes)
            self.gates = torch.cat([relaxed_mask(scores[s], k_each, tau, self.straight_through) for s in self.slices])
        else:
            self.gates = relaxed_mask(scores, self.k, tau, self.straight_through)

    def add_sample_size(self, sample_size) -> None:
        self._sample_size += float(sample_size)

    def hard_mask(self) -> torch.Tensor:
        """(N,) 0/1: the K heads with the highest logits, at least one per module."""
        return keep_top_k(self.logits.detach(), self.sizes, self.k, self.per_module)

    def use_hard_mask(self) -> None:
        self.gates = self.hard_mask()

    def clear(self) -> None:
        self.gates = None

    def step(self, optimizer) -> bool:
        """One Adam step on the logits from the update's accumulated gradient; False when skipped
        (no gradient, or a non-finite one, e.g. an fp16 overflow)."""
        grad = self.logits.grad
        if grad is None:
            return False
        total = torch.cat([grad.detach().float().flatten(), grad.new_tensor([self._sample_size])])
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

    def heads_per_module(self) -> Dict[str, int]:
        mask = self.hard_mask()
        return {name: int(mask[s].sum()) for (name, _), s in zip(self.modules, self.slices)}

    def _save_hook(self, _module, state_dict, prefix, _local_metadata):
        mask = self.hard_mask().cpu()
        for (name, _), s in zip(self.modules, self.slices):
            key = f"{prefix}{name}.{MASK_BUFFER}"
            state_dict[key] = mask[s].to(state_dict[key].dtype)
        state_dict[prefix + DSP_LOGITS_KEY] = self.logits.detach().cpu().clone()

    def _load_hook(self, state_dict, prefix, *_args):
        logits = state_dict.pop(prefix + DSP_LOGITS_KEY, None)
        if logits is not None:
            if tuple(logits.shape) != tuple(self.logits.shape):
                raise ValueError(f"checkpoint {DSP_LOGITS_KEY} has shape {tuple(logits.shape)}, the model has {sum(self.sizes)} heads")
            with torch.no_grad():
                self.logits.copy_(logits)
        for name, _ in self.modules:  # DSP trains every head; the stored hard mask is for evaluation
            key = f"{prefix}{name}.{MASK_BUFFER}"
            if key in state_dict:
                state_dict[key] = torch.ones_like(state_dict[key])
