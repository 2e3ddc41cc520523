"""Tools' output files: checks before any work is done (one-line errors naming the flag), and writing a
checkpoint whose model state was changed."""
import os
from pathlib import Path

import torch


def prepare_output(path: str, flag: str, overwrite: bool = True) -> Path:
    """Create ``path``'s folder and check it can be written.

    Args:
        path: the file the tool will write.
        flag: the command-line flag that named it, for the message.
        overwrite: when False an existing ``path`` is refused.
    Returns:
        ``path`` as a ``Path``.
    Raises:
        SystemExit: with a one-line message naming ``flag`` and the path.
    """
    out = Path(path)
    if out.exists() and not overwrite:
        raise SystemExit(f"{flag}: {out} exists; pass --overwrite to replace it")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SystemExit(f"{flag}: cannot write to {parent}: {err}")
    if not os.access(parent, os.W_OK):
        raise SystemExit(f"{flag}: cannot write to {parent}")
    return out


def save_model_state(source_checkpoint: str, model, out: Path) -> None:
    """Write ``source_checkpoint`` to ``out`` with its model state replaced by ``model``'s (on CPU);
    everything else (config, optimizer history, extra state) is kept as it was."""
    checkpoint = torch.load(source_checkpoint, map_location="cpu", weights_only=False)
    checkpoint["model"] = {k: v.cpu() for k, v in model.state_dict().items()}
    torch.save(checkpoint, out)
