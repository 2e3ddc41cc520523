"""The comparison study's results table from its files: evaluation records, benchmark reports, train logs.

Usage:
    python -m neuroprune.tools.study_table RECORD.json [...] --bench-dir DIR --logs-dir DIR \
        --out-tsv results.tsv --out-md results.md

For a record named NAME, ``DIR/NAME.json`` in --bench-dir is its inference benchmark (tools.bench_generate)
and ``NAME.txt`` in --logs-dir its fine-tuning log excerpt (fairseq's ``| train | epoch`` lines, whose
last ``wps`` is the training speed). A missing benchmark or log leaves that cell empty ("-").
"""
import argparse
import json
import re
from pathlib import Path

from ..cli import exit_on_value_error
from .outputs import prepare_output
from .records import load_records

COLUMNS = ("run", "method", "budget", "heads kept", "weight sparsity", "sacreBLEU", "tok. BLEU",
           "params after export", "generate speed-up", "train words/s")


def train_wps(log: Path):
    """Words per second of the last training epoch in a fairseq log, or None."""
    if not log.exists():
        return None
    found = re.findall(r"\| train \| epoch \d+ \|.*?\| wps ([0-9.]+)", log.read_text())
    return float(found[-1]) if found else None


def bench_figures(path: Path):
    """(exported parameters, exported/dense generation speed-up) from a benchmark report, or Nones."""
    if not path.exists():
        return None, None
    try:
        exported = json.loads(path.read_text())["models"]["exported"]
        return exported["params"], exported["speedup_generate"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{path}: not a benchmark report of tools.bench_generate ({err})") from err


def rows(records, bench_dir: Path, logs_dir: Path):
    out = []
    for r in records:
        params, speedup = bench_figures(bench_dir / f"{r['name']}.json")
        wps = train_wps(logs_dir / f"{r['name']}.txt")
        out.append((
            r["name"], r["method"], "-" if r.get("budget") is None else str(r["budget"]),
            f"{r['heads_kept']}/{r['heads_total']}", f"{r['weight_sparsity']:.4f}", f"{r['bleu']:.2f}",
            f"{r.get('tokenized_bleu', float('nan')):.2f}", "-" if params is None else f"{params:,}",
            "-" if speedup is None else f"{speedup:.2f}x", "-" if wps is None else f"{wps:.0f}",
        ))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("records", nargs="+", help="evaluation records (tools.evaluate)")
    p.add_argument("--bench-dir", required=True, help="folder of NAME.json inference benchmark reports")
    p.add_argument("--logs-dir", required=True, help="folder of NAME.txt fine-tuning log excerpts")
    p.add_argument("--out-tsv", required=True, help="table as tab-separated values")
    p.add_argument("--out-md", required=True, help="table as markdown, with the BLEU signature under it")
    args = p.parse_args(argv)
    with exit_on_value_error("study_table: "):
        records = load_records(args.records)
        table = rows(records, Path(args.bench_dir), Path(args.logs_dir))
    prepare_output(args.out_tsv, "--out-tsv").write_text("\n".join("\t".join(r) for r in [COLUMNS, *table]) + "\n")
    signatures = sorted({r.get("bleu_signature", "?") for r in records})
    md = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)] + ["| " + " | ".join(r) + " |" for r in table]
    md.append("")
    md.append("sacreBLEU signature: " + "; ".join(f"`{s}`" for s in signatures))
    prepare_output(args.out_md, "--out-md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
