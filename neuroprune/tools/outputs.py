"""Checks on a tool's input and output files before any work is done, with one-line errors naming the flag."""
import os
from pathlib import Path


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



def require_inputs(*paths_and_flags) -> None:
    """``SystemExit`` naming the flag for the first ``(path, flag)`` whose path does not exist."""
    for path, flag in paths_and_flags:
        if not os.path.exists(path):
            raise SystemExit(f"{flag}: {path} does not exist")
