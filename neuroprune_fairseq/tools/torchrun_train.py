"""fairseq-train as one torchrun worker: torchrun's RANK / WORLD_SIZE / LOCAL_RANK become fairseq's own flags.

Usage (every machine runs the same line; HOST:PORT is reachable from all of them):
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:PORT \
        -m neuroprune_fairseq.tools.torchrun_train DATA_BIN --user-dir neuroprune_fairseq --task neuroprune_translation ...

fairseq-train alone does not run under torchrun on CPU: without ``--distributed-world-size`` every worker trains
as a world of one (each its own model, all writing the same ``--save-dir``), and with it fairseq's torchrun
detection divides by the CUDA device count (``ZeroDivisionError`` without GPUs). This wrapper appends
``--distributed-world-size WORLD_SIZE --distributed-rank RANK --device-id LOCAL_RANK --distributed-init-method
env:// --distributed-no-spawn`` (``env://`` joins torchrun's rendezvous store), ``--distributed-backend gloo``
with ``--cpu`` (else fairseq's nccl) and ``--ddp-backend legacy_ddp`` unless the arguments name a backend, and
runs fairseq-train's own ``cli_main`` in this process.
"""
import logging
import os
import sys
from typing import List, Mapping

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
SET_HERE = ("--distributed-world-size", "--distributed-rank", "--device-id", "--distributed-init-method",
            "--distributed-no-spawn")


def _given(args: List[str], flag: str) -> bool:
    """Whether ``flag`` appears in ``args`` (as ``--flag VALUE`` or ``--flag=VALUE``)."""
    return any(a == flag or a.startswith(flag + "=") for a in args)


def distributed_flags(args: List[str], environ: Mapping[str, str]) -> List[str]:
    """The fairseq flags that make this process rank RANK of WORLD_SIZE under torchrun (see the module docstring).

    Raises:
        SystemExit: a torchrun variable is missing or not an integer (not started by torchrun), or ``args``
            already set a flag that this wrapper sets.
    """
    missing = [v for v in TORCHRUN_VARIABLES if not environ.get(v, "").isdigit()]
    if missing:
        raise SystemExit(f"torchrun_train: {', '.join(missing)} not set to an integer: start this module with torchrun "
                         "(torchrun ... -m neuroprune_fairseq.tools.torchrun_train ARGS)")
    clashing = [f for f in SET_HERE if _given(args, f)]
    if clashing:
        raise SystemExit(f"torchrun_train: {', '.join(clashing)} come from torchrun here; leave them out of the arguments")
    flags = ["--distributed-world-size", environ["WORLD_SIZE"], "--distributed-rank", environ["RANK"],
             "--device-id", environ["LOCAL_RANK"], "--distributed-init-method", "env://", "--distributed-no-spawn"]
    if not _given(args, "--distributed-backend"):
        flags += ["--distributed-backend", "gloo" if "--cpu" in args else "nccl"]
    if not _given(args, "--ddp-backend"):
        flags += ["--ddp-backend", "legacy_ddp"]
    return flags


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return
    sys.argv = [sys.argv[0], *args, *distributed_flags(args, os.environ)]
    # Importing the plugin ran a fairseq task's logging.basicConfig; without its handler, fairseq-train's own
    # (timestamps, on stdout), set when fairseq_cli.train is imported, takes effect as under fairseq-train.
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    from fairseq_cli.train import cli_main

    cli_main()


if __name__ == "__main__":
    main()
