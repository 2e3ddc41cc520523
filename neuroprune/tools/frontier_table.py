"""The frontier sweep's table from its evaluation records: one row per run, BLEU of the evaluated (thresholded)
model beside the model as stored, and where the zeros are.

Usage:
    python -m neuroprune.tools.frontier_table RECORD.json [...] --out-md results.md [--significance SIG.json ...] [--overwrite]

Rows are sorted by head budget (the dense control first), method and weight sparsity. Every sparsity is a share of
exact zeros in the evaluated model (records with ``sparsity_definition: exact_zero``): of the q/k/v/out and fc1/fc2
weights (overall and by type, removed heads counted as zero) and of all parameters (embeddings and output
projection included, tied tensors once); "exported" is the parameter count once removed heads and all-zero FFN
units are physically taken out. "BLEU as stored" scores the checkpoint before |w| < zero_below was zeroed.
Each ``--significance`` file (``tools.significance --out``, one run per system name) adds a column: the run's
paired-bootstrap p-value against that file's baseline, Holm-adjusted over the file's family ("baseline" on the
baseline's row, empty for a run the file does not hold).
"""
import argparse
import json
from pathlib import Path
from statistics import fmean

from ..cli import exit_on_value_error, overwrite_flag
from .outputs import prepare_output
from .records import load_records

NEEDS = {"weight_sparsity_by_type": dict, "param_sparsity": (int, float), "params.exported": int, "sparsity_definition": str}
HEADER = ("| run | method | heads | sacreBLEU | BLEU as stored | weight sparsity | q/k/v | out | fc1/fc2 | all parameters "
          "| exported parameters |")


def row(record: dict, comparisons=()) -> str:
    """One markdown row of a record, then its cell of each comparison (run name -> p text)."""
    by_type = record["weight_sparsity_by_type"]
    stored = record.get("unthresholded", {}).get("bleu")
    cells = "".join(f" {c.get(record['name'], '')} |" for c in comparisons)
    return (f"| {record['name']} | {record['method']} | {record['heads_kept']} | {record['bleu']:.2f} | "
            f"{'' if stored is None else f'{stored:.2f}'} | {record['weight_sparsity']:.3f} | "
            f"{fmean(by_type[k] for k in 'qkv'):.3f} | {by_type['out']:.3f} | {fmean(by_type[k] for k in ('fc1', 'fc2')):.3f} | "
            f"{record['param_sparsity']:.3f} | {record['params']['exported']:,} |{cells}")


def comparison(path: str) -> tuple:
    """(baseline name, run name -> cell text) of a ``tools.significance --out`` file; an unreadable one is refused."""
    try:
        systems = json.loads(Path(path).read_text())["systems"]
        cells = {s["name"]: "baseline" if s["p_value"] is None else f"{s['p_holm']:.3f}" for s in systems}
        return systems[0]["name"], cells
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"--significance {path}: not a tools.significance --out file ({e!r})") from e


def table(records, comparisons=()) -> str:
    """The markdown table of ``records`` (refused unless each counts exact zeros), with a p-value column per
    (baseline, cells) comparison."""
    for record in records:
        if record["sparsity_definition"] != "exact_zero":
            raise ValueError(f"record {record['name']}: its sparsity is '{record['sparsity_definition']}', not exact zeros")
    ordered = sorted(records, key=lambda r: (r.get("budget") or 10**9 if r["method"] != "dense" else -1, r["method"],
                                             r["weight_sparsity"], r["name"]))
    header = HEADER + "".join(f" p vs {baseline} (Holm) |" for baseline, _ in comparisons)
    cells = [c for _, c in comparisons]
    return "\n".join([header, "|" + "---|" * (header.count(" | ") + 1), *(row(r, cells) for r in ordered)]) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[overwrite_flag("replace an existing --out-md")])
    p.add_argument("records", nargs="+", help="evaluation records (tools.evaluate --zero-below output)")
    p.add_argument("--out-md", required=True, help="markdown table to write")
    p.add_argument("--significance", action="append", default=[],
                   help="a tools.significance --out file whose systems are named by run: adds its Holm-adjusted p column")
    args = p.parse_args(argv)
    out = prepare_output(args.out_md, "--out-md", args.overwrite)
    with exit_on_value_error("frontier_table: "):
        text = table(load_records(args.records, NEEDS), [comparison(f) for f in args.significance])
    out.write_text(text)
    print(f"{len(args.records)} runs -> {out}")


if __name__ == "__main__":
    main()
