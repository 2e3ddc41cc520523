"""Topology report of one checkpoint: heads kept (layers x heads grid), weight sparsity per matrix type,
FFN neuron degrees and the regularizers R_attn / R_mlp, printed and written as JSON.

Usage:
    python -m neuroprune.tools.report --checkpoint CKPT --out REPORT.json [--eps 1e-4] [--overwrite]

Masked heads count as removed (their weights are zeroed before counting), so a checkpoint that stores a
mask over non-zero weights (DSP) reads like one whose masked weights are zero. Exported (physically
smaller) checkpoints are read from their shapes; their grid lists the kept heads first, since which heads
were removed is no longer recorded.
"""
import argparse
import json

from .. import checkpoint_stats
from ..cli import eps_flag, exit_on_value_error, overwrite_flag
from .outputs import prepare_output, require_inputs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[
        overwrite_flag("replace an existing --out report"), eps_flag("|w| below this counts as zero (sparsity, degrees, R_mlp)")])
    p.add_argument("--checkpoint", required=True, help="fairseq checkpoint (.pt) to describe")
    p.add_argument("--out", required=True, help="JSON report to write (refused if it exists, unless --overwrite)")
    return p.parse_args(argv)


def head_grid(head_masks) -> str:
    """One text row per attention module: its label, then ``#`` for a kept head and ``.`` for a removed one."""
    width = max((len(m["label"]) for m in head_masks), default=0)
    return "\n".join(f"{m['label']:<{width}}  " + "".join("#" if h else "." for h in m["mask"]) for m in head_masks)


def summary(report: dict) -> str:
    """A readable multi-line summary of a topology report."""
    sparsity, ffn, pen = report["weight_sparsity"], report["ffn"], report["penalties"]
    lines = [
        f"heads kept {report['heads_kept']}/{report['heads_total']} (# kept, . removed)",
        head_grid(report["head_masks"]),
        f"weight sparsity {sparsity['overall']:.4f} (|w| < {report['eps']:g}) | "
        + " ".join(f"{kind} {share:.4f}" for kind, share in sparsity["by_type"].items()),
        f"{'FFN layer':<10} {'width':>6} {'dead':>6} {'deg mean':>9} {'deg std':>8}",
    ]
    for row in ffn["layers"] + [{"label": "all", **ffn}]:
        lines.append(f"{row['label']:<10} {row['width']:>6} {row['dead']:>6} {row['degree_mean']:>9.2f} {row['degree_std']:>8.2f}")
    lines.append(f"R_attn {pen['R_attn']:.4f} | R_mlp {pen['R_mlp']:.4f}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    require_inputs((args.checkpoint, "--checkpoint"))
    out = prepare_output(args.out, "--out", overwrite=args.overwrite)
    with exit_on_value_error("--checkpoint: "):
        ckpt = checkpoint_stats.load_checkpoint(args.checkpoint)
        heads = checkpoint_stats.architecture_heads(ckpt)
        report = {"checkpoint": args.checkpoint, **checkpoint_stats.topology(ckpt["model"], heads, args.eps)}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))
    print(f"report written to {out}")
    return report


if __name__ == "__main__":
    main()
