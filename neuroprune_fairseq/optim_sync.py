"""Keep fairseq's fp32 master weights in step with in-place edits of the model's parameters.

``FP16Optimizer`` (``--fp16`` without ``--memory-efficient-fp16``) steps an fp32 copy and copies it
into the fp16 model after each step. Elimination edits the model's parameters (folding, zeroing) after a
step; without this sync the next step would overwrite those edits with the stale master copy.
"""
from collections import defaultdict


def copy_model_params_to_master(optimizer) -> bool:
    """Copy the model's (fp16) parameters into ``optimizer``'s fp32 master copy, if it has one.

    Mirrors ``FP16Optimizer._sync_fp32_params_to_fp16`` in the other direction.
    Returns:
        True when a master copy existed and was updated.
    """
    master = getattr(optimizer, "fp32_params", None)
    if master is None:
        return False
    if optimizer.has_flat_params:
        by_device = defaultdict(list)
        for p in optimizer.fp16_params:
            by_device[p.device.index].append(p)
        for device, flat in master.items():
            offset = 0
            for p in by_device[device]:
                numel = p.data.numel()
                flat.data[offset : offset + numel].copy_(p.data.view(-1))
                offset += numel
    else:
        for p, p32 in zip(optimizer.fp16_params, master):
            if p.requires_grad:
                p32.data.copy_(p.data)
    return True
