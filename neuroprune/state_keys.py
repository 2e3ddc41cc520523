"""Names in a model's state dict: NeuroPrune's entries, and short labels for fairseq's module names.

A head mask is the entry ``<module>.np_head_mask`` of shape (num_heads,), 1 = active, 0 = pruned; the
model's pruned-epoch counter is ``np_last_pruned_epoch``; DSP's training state (gate logits, their AdamW
state) is every entry starting with ``np_dsp_``.
"""
MASK_BUFFER = "np_head_mask"
PRUNED_EPOCH_BUFFER = "np_last_pruned_epoch"
DSP_STATE_PREFIX = "np_dsp_"  # DSP's training state in a checkpoint's model state: gate logits, their AdamW state
DSP_LOGITS_KEY = DSP_STATE_PREFIX + "logits"  # (see neuroprune_fairseq.dsp_gates)


def short_name(name: str) -> str:
    """``encoder.layers.0.self_attn`` -> ``enc0.self``; other names are returned unchanged."""
    parts = name.split(".")
    if len(parts) == 4 and parts[1] == "layers":
        side = {"encoder": "enc", "decoder": "dec"}.get(parts[0], parts[0])
        kind = {"self_attn": "self", "encoder_attn": "cross"}.get(parts[3], parts[3])
        return f"{side}{parts[2]}.{kind}"
    return name
