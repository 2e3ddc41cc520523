"""Prune a trained fairseq checkpoint to a target unstructured (or N:M) sparsity with no retraining.

Usage:
    python -m neuroprune_fairseq.tools.post_prune --checkpoint CK.pt --data-bin DIR \
        --method {magnitude,wanda,sparsegpt,sparsellm} --sparsity 0.7 --out CK_sparse.pt \
        [--pattern 2:4] [--calib-sentences 256 --subset train --iterations 4 --acceptance-test] \
        [--heldout-sentences 256] [--record CK_sparse.json] [--cpu]

Every transformer layer's q/k/v/out projections and fc1/fc2 get exactly the asked share of zeros among the
weights that head masks have not already removed (see ``neuroprune_fairseq.post_pruning``; more only where
SparseGPT or SparseLLM zero the weights of more dead inputs, zero on every calibration token), chosen by
magnitude, Wanda, SparseGPT, or SparseLLM (fc1/fc2 jointly, attention by SparseGPT), from a seeded random
choice of ``--calib-sentences`` sentences of ``--subset`` (decoder teacher-forced, padding excluded). The
checkpoint may be dense, head-masked (NeuroPrune, DSP, Michel) or exported; the output is the input
checkpoint with only its model weights replaced (masks kept), loadable by ``fairseq-generate --user-dir
neuroprune_fairseq --task neuroprune_translation``. The record (JSON, default ``<out>`` with ``.json``)
holds the settings, the sparsity per matrix and per matrix type, each matrix's reconstruction error on
the calibration inputs, SparseLLM's objective and FFN output error per iteration, with ``--heldout-sentences``
each FFN block's output error on held-out sentences (for SparseLLM per iteration too, iteration 0 being
layer-wise SparseGPT), the wall time and the peak memory.
"""
import argparse
import dataclasses
import json
import os
import resource
import time
from pathlib import Path
from typing import Tuple

import torch

from neuroprune import checkpoint_stats
from neuroprune.cli import cpu_flag, overwrite_flag
from neuroprune.core.post_training import parse_pattern
from neuroprune.tools.outputs import prepare_output

from .. import head_masks
from ..calibration import calibration_batches
from ..post_pruning import (
    KINDS, METHODS, Settings, calibration_tokens, check_pattern_fits, check_relu_ffns, check_sparsellm_tokens, prune_model,
)
from .checkpoints import load_model, save_model_state

# method-specific options: default value, methods that use it
SPECIFIC = {"iterations": (4, {"sparsellm"}), "acceptance_test": (False, {"sparsellm"}),
            "block_size": (128, {"sparsegpt", "sparsellm"}), "damp": (0.01, {"sparsegpt", "sparsellm"})}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                parents=[overwrite_flag("replace an existing --out and --record"), cpu_flag("run")])
    p.add_argument("--checkpoint", required=True, help="fairseq checkpoint to prune (dense, head-masked or exported)")
    p.add_argument("--data-bin", required=True, help="fairseq-preprocess output directory with the calibration split")
    p.add_argument("--method", required=True, choices=METHODS, help="how the weights to zero are chosen (and the rest updated)")
    p.add_argument("--sparsity", type=float, default=None, help="share of each matrix's active weights to zero, in [0, 1)")
    p.add_argument("--pattern", default=None, help="N:M: zero N of every M consecutive inputs of each row instead (sparsity N/M)")
    p.add_argument("--out", required=True, help="pruned checkpoint to write (refused if it exists, unless --overwrite)")
    p.add_argument("--record", default=None, help="JSON record to write (default: --out with the suffix .json)")
    p.add_argument("--calib-sentences", type=int, default=256, help="calibration sentences (not read by magnitude)")
    p.add_argument("--subset", default="train", help="split the calibration sentences are drawn from")
    p.add_argument("--seed", type=int, default=1, help="seed of the calibration sentences' random choice")
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens per calibration batch")
    p.add_argument("--heldout-sentences", type=int, default=0,
                   help="also measure each FFN block's output error on this many sentences of --heldout-subset (0: off)")
    p.add_argument("--heldout-subset", default="valid", help="split of the held-out sentences (choose one other than --subset)")
    p.add_argument("--iterations", type=int, default=None,
                   help="sparsellm: alternating rounds, the first (SparseGPT) included (default 4)")
    p.add_argument("--acceptance-test", action="store_true", default=None,
                   help="sparsellm: keep a re-pruned fc1/fc2 only when it does not raise its term of the objective F. "
                        "Not in the paper or its code (off by default: every re-pruned matrix is taken); this "
                        "project's SparseLLM ran with it before issue 27, so it reproduces those records")
    p.add_argument("--block-size", type=int, default=None,
                   help="sparsegpt/sparsellm: columns whose mask is chosen together (default 128, or the next multiple of a pattern's M)")
    p.add_argument("--damp", type=float, default=None,
                   help="sparsegpt/sparsellm: Hessian dampening as a share of its mean diagonal (default 0.01)")
    return p.parse_args(argv)


def check_args(args) -> Settings:
    """The settings from ``args``; ``SystemExit`` naming the flag for anything out of range."""
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"--checkpoint: {args.checkpoint} does not exist")
    if not os.path.isdir(args.data_bin):
        raise SystemExit(f"--data-bin: {args.data_bin} is not a directory")
    if args.sparsity is None and args.pattern is None:
        raise SystemExit("--sparsity or --pattern is required")
    pattern = None
    if args.pattern is not None:
        try:
            pattern = parse_pattern(args.pattern)
        except ValueError as err:
            raise SystemExit(f"--pattern: {err}")
        if args.sparsity is not None and args.sparsity != pattern[0] / pattern[1]:
            raise SystemExit(f"--sparsity {args.sparsity} contradicts --pattern {args.pattern} (sparsity {pattern[0] / pattern[1]:g}); give one of them")
    sparsity = pattern[0] / pattern[1] if pattern else args.sparsity
    if not 0 <= sparsity < 1:
        raise SystemExit(f"--sparsity {sparsity}: must be in [0, 1)")
    if args.calib_sentences < 1:
        raise SystemExit(f"--calib-sentences {args.calib_sentences}: at least 1 calibration sentence is needed")
    if args.heldout_sentences < 0:
        raise SystemExit(f"--heldout-sentences {args.heldout_sentences}: expected 0 (off) or a number of sentences")
    return Settings(args.method, sparsity, pattern, **method_options(args, pattern))


def method_options(args, pattern) -> dict:
    """--iterations, --acceptance-test, --block-size and --damp with their defaults; ``SystemExit`` when one is
    given to a method that does not use it or is out of range."""
    values = {}
    for name, (default, methods) in SPECIFIC.items():
        value = getattr(args, name)
        if value is not None and args.method not in methods:
            raise SystemExit(f"--{name.replace('_', '-')} is only used by {' and '.join(sorted(methods))}, not by --method {args.method}")
        values[name] = default if value is None else value
    if values["iterations"] < 1 or values["block_size"] < 1 or values["damp"] <= 0:
        raise SystemExit(f"--iterations and --block-size must be >= 1 and --damp > 0, got {values['iterations']}, "
                         f"{values['block_size']}, {values['damp']}")
    if pattern and args.block_size is None:
        values["block_size"] = -(-values["block_size"] // pattern[1]) * pattern[1]  # the default, rounded up to a multiple of M
    if pattern and values["block_size"] % pattern[1]:
        raise SystemExit(f"--block-size {values['block_size']} must be a multiple of the pattern's M = {pattern[1]}")
    return values


def load(args):
    """The checkpoint's model (head masks attached, eval mode) and task, with data from --data-bin."""
    model, _, task = load_model(args.checkpoint, args.data_bin, args.cpu)
    return model.eval(), task


def calibration_for(args, settings: Settings, model, task) -> Tuple[list, list]:
    """The calibration batches (none for magnitude) and the held-out ones (none unless asked for), once the
    model is known to fit the flags; ``SystemExit`` naming the flag otherwise."""
    try:
        check_pattern_fits(model, settings.pattern)
    except ValueError as err:
        raise SystemExit(f"--pattern {args.pattern}: {err}")
    if settings.method == "sparsellm":
        try:
            check_relu_ffns(model)
        except ValueError as err:
            raise SystemExit(f"--method sparsellm: {err}")
    batches, heldout = [], []
    try:
        if settings.method != "magnitude":
            batches = calibration_batches(task, model, args.subset, args.calib_sentences, args.max_tokens, args.seed)
        if settings.method == "sparsellm":
            check_sparsellm_tokens(model, batches)
    except ValueError as err:
        raise SystemExit(f"--calib-sentences {args.calib_sentences} --subset {args.subset}: {err}")
    try:
        if args.heldout_sentences:
            heldout = calibration_batches(task, model, args.heldout_subset, args.heldout_sentences, args.max_tokens, args.seed)
    except ValueError as err:
        raise SystemExit(f"--heldout-sentences {args.heldout_sentences} --heldout-subset {args.heldout_subset}: {err}")
    return batches, heldout


def summarize(layers) -> dict:
    """Zeros / active weights overall and per matrix type, from the layers' per-matrix figures."""
    counts = {kind: [0, 0] for kind in dict.fromkeys(KINDS.values())}
    for layer in layers:
        for matrix in layer["matrices"].values():
            counts[matrix["kind"]][0] += matrix["zeros"]
            counts[matrix["kind"]][1] += matrix["entries"]
    zeros, entries = (sum(c[i] for c in counts.values()) for i in (0, 1))
    return {"overall": zeros / entries, "by_type": {kind: z / max(n, 1) for kind, (z, n) in counts.items()}}


def main(argv=None):
    start = time.perf_counter()
    args = parse_args(argv)
    settings = check_args(args)
    record_path = args.record or str(Path(args.out).with_suffix(".json"))
    out = prepare_output(args.out, "--out", args.overwrite)
    record_out = prepare_output(record_path, "--record", args.overwrite)
    try:
        checkpoint = checkpoint_stats.load_checkpoint(args.checkpoint)
    except ValueError as err:
        raise SystemExit(f"--checkpoint: {err}")
    model, task = load(args)
    batches, heldout = calibration_for(args, settings, model, task)
    try:
        result = prune_model(model, batches, settings, heldout)
    except ValueError as err:
        raise SystemExit(f"post_prune: {err}")
    save_model_state(checkpoint, model, out)
    record = {
        "checkpoint": args.checkpoint, "out": str(out), "method": settings.method, "sparsity": settings.sparsity,
        "pattern": args.pattern and f"{settings.pattern[0]}:{settings.pattern[1]}", "args": vars(args),
        "settings": dataclasses.asdict(settings),
        "calibration": {"subset": args.subset, "sentences": sum(len(b["id"]) for b in batches),
                        "tokens": calibration_tokens(model, batches) if batches else None},
        "heldout": {"subset": args.heldout_subset, "sentences": sum(len(b["id"]) for b in heldout)} if heldout else None,
        "sparsity_achieved": summarize(result["layers"]),
        "wall_seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if torch.cuda.is_available() else None,
        **result,
    }
    record_out.write_text(json.dumps(record, indent=2) + "\n")
    achieved = record["sparsity_achieved"]
    print(f"post_prune | wrote {out} | {settings.method} | sparsity {achieved['overall']:.4f} of the active weights ("
          + " ".join(f"{kind} {share:.4f}" for kind, share in achieved["by_type"].items())
          + f") | {record['wall_seconds']:.1f}s | record {record_out}")
    return record


if __name__ == "__main__":
    main()
