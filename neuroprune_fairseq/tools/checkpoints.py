"""A checkpoint's model for the pruning tools, and writing a checkpoint whose model state changed."""
from pathlib import Path

import torch

from .. import head_masks


def load_model(checkpoint: str, data_bin: str, cpu: bool):
    """The checkpoint's model (head masks attached; on CUDA when available unless ``cpu``), its config and
    its task, with data from ``data_bin``: ``(model, cfg, task)``. A DSP checkpoint's gates are frozen, so its
    saved hard top-K is the live head masks (loading for a resume sets them all ones) and its removed heads
    are masked, not active weights, for the tools that read the masks."""
    from fairseq import checkpoint_utils  # the plugin is registered: importing this module imported the package

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": data_bin})
    model = models[0]
    head_masks.attach(model)
    if getattr(task, "dsp", None) is not None:
        task.dsp.freeze()
    if torch.cuda.is_available() and not cpu:
        model.cuda()
    return model, cfg, task


def save_model_state(checkpoint: dict, model, out: Path) -> None:
    """Write the loaded ``checkpoint`` dict to ``out`` with its model state replaced by ``model``'s (on CPU);
    everything else (config, optimizer history, extra state) is kept as it was."""
    torch.save({**checkpoint, "model": {k: v.cpu() for k, v in model.state_dict().items()}}, out)
