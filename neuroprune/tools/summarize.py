"""Summarize evaluation records: a results JSON, a PNG (BLEU and heads kept per model) and a table.

Usage:
    python -m neuroprune.tools.summarize RECORD.json [RECORD.json ...] --out-json results.json \
        --out-png results.png [--title TITLE] [--control NAME [--significance significance.json]]

Rows keep the order of the records given. With ``--control NAME`` the record of that name is the comparison's
baseline: it must be among the records, and every row gets its sacreBLEU difference to it; ``--significance``
(``tools.significance --out``, run with the control as its first system) adds each row's paired bootstrap p-value
against it.
"""
import argparse
import json
import logging
from pathlib import Path
from typing import Dict, Optional

from ..cli import exit_on_value_error
from .outputs import prepare_output
from .records import load_records


def common_length_limit(records):
    """N when every record scored its split's sentences of at most N pieces (``within_max_pieces``) with
    the same N, else None."""
    subsets = [r.get("within_max_pieces") for r in records]
    return subsets[0]["max_pieces"] if all(subsets) and len({s["max_pieces"] for s in subsets}) == 1 else None


def control_gaps(records, control: str) -> Dict[str, float]:
    """name -> the record's sacreBLEU minus that of the record named ``control``; ``ValueError`` naming the missing
    record when no record has that name."""
    by_name = {r["name"]: r["bleu"] for r in records}
    if len(by_name) < len(records):
        raise ValueError(f"--control {control}: the records' names repeat ({', '.join(r['name'] for r in records)})")
    if control not in by_name:
        raise ValueError(f"--control {control}: no record named '{control}' among the records given "
                         f"({', '.join(by_name)}); the comparison needs the control's record")
    return {name: round(bleu - by_name[control], 2) for name, bleu in by_name.items()}


def control_p_values(path: str, control: str) -> Dict[str, float]:
    """name -> paired bootstrap p-value against the control, from a ``tools.significance --out`` file whose baseline
    (first system) must be ``control``; ``ValueError`` naming the file otherwise."""
    try:
        systems = json.loads(Path(path).read_text())["systems"]
        baseline = systems[0]["name"]
        p_values = {s["name"]: s["p_value"] for s in systems[1:]}
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise ValueError(f"--significance {path}: not a tools.significance JSON ({err!r})") from err
    if baseline != control:
        raise ValueError(f"--significance {path}: its baseline is '{baseline}', not the control '{control}'")
    return p_values


def table(records, control: Optional[str] = None, p_values: Optional[Dict[str, float]] = None) -> str:
    """A fixed-width text table of the records, in their order; a 'BLEU<=N' column when they share a length subset,
    the exported parameter count where the records give it, and with ``control`` (a record's name) a 'vs control'
    column: the sacreBLEU difference (:func:`control_gaps`), with its p-value from ``p_values`` where given."""
    gaps = control_gaps(records, control) if control else None
    limit = common_length_limit(records)
    short = f"BLEU<={limit}" if limit else ""
    head = (f"{'model':<16} {'method':<15} {'sacreBLEU':>9} {short:>9} {'tok.BLEU':>8} {'heads':>8} {'sparsity':>8} "
            f"{'exported':>9} {'gen s':>6}" + (f" {'vs control':>18}" if gaps else ""))
    rows = [head, "-" * len(head)]
    for r in records:
        vs_control = ""
        if gaps:
            p = (p_values or {}).get(r["name"])
            vs_control = "(control)" if r["name"] == control else f"{gaps[r['name']]:+.2f}"
            vs_control += f" (p {p:.4f})" if p is not None else ""
        rows.append(
            f"{r['name']:<16} {r['method']:<15} {r['bleu']:>9.2f} "
            f"{format(r['within_max_pieces']['bleu'], '.2f') if limit else '':>9} {r.get('tokenized_bleu', float('nan')):>8.2f} "
            f"{str(r['heads_kept']) + '/' + str(r['heads_total']):>8} {r['weight_sparsity']:>8.4f} "
            f"{r.get('params', {}).get('exported', ''):>9} {r.get('generate_seconds', float('nan')):>6.1f}"
            + (f" {vs_control:>18}" if gaps else "")
        )
    if limit:
        rows.append(f"sacreBLEU: all {records[0]['sentences']} sentences of the split; BLEU<={limit}: the "
                    f"{records[0]['within_max_pieces']['sentences']} whose source and reference have <= {limit} pieces")
    if gaps:
        rows.append("vs control: sacreBLEU minus the control's" + (", p: paired bootstrap against the control" if p_values else ""))
    return "\n".join(rows)


def plot(records, path: Path, title: str) -> None:
    """Two bar panels, BLEU and heads kept, one bar per record."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's logging setup would print its DEBUG lines
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in records]
    fig, (ax_bleu, ax_heads) = plt.subplots(1, 2, figsize=(9, 3.6))
    subsets = [r.get("within_max_pieces") for r in records] if common_length_limit(records) else []
    width = 0.4 if subsets else 0.8
    offsets = [i - width / 2 if subsets else i for i in range(len(records))]
    bars = ax_bleu.bar(offsets, [r["bleu"] for r in records], width, color="tab:blue", label="whole split")
    ax_bleu.bar_label(bars, fmt="%.1f")
    if subsets:
        bars = ax_bleu.bar([i + width for i in offsets], [s["bleu"] for s in subsets], width, color="tab:cyan",
                           label=f"<= {subsets[0]['max_pieces']} pieces ({subsets[0]['sentences']} sent.)")
        ax_bleu.bar_label(bars, fmt="%.1f")
        ax_bleu.legend(loc="lower right", fontsize=8)
    ax_bleu.set_xticks(range(len(records)), names)
    ax_bleu.set_ylabel("sacreBLEU (test)")
    bars = ax_heads.bar(names, [r["heads_kept"] for r in records], color="tab:orange")
    ax_heads.bar_label(bars, fmt="%d")
    ax_heads.axhline(max(r["heads_total"] for r in records), color="grey", linestyle="--", label="all heads")
    ax_heads.set_ylabel("attention heads kept")
    ax_heads.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("records", nargs="+", help="evaluation record JSON files")
    p.add_argument("--out-json", required=True, help="results JSON to write (all records in one list)")
    p.add_argument("--out-png", required=True, help="PNG plot to write")
    p.add_argument("--title", default="NeuroPrune on the offline German-English corpus", help="plot title")
    p.add_argument("--control", default=None,
                   help="name of the control's record: required among the records; each row gets its BLEU difference to it")
    p.add_argument("--significance", default=None,
                   help="with --control: tools.significance JSON with the control as baseline; adds the p-values")
    args = p.parse_args(argv)
    if args.significance and not args.control:
        raise SystemExit("summarize: --significance needs --control (the baseline its p-values are against)")
    with exit_on_value_error("summarize: "):
        records = load_records(args.records)
        summary = table(records, args.control,
                        control_p_values(args.significance, args.control) if args.significance else None)
    prepare_output(args.out_json, "--out-json")
    prepare_output(args.out_png, "--out-png")
    Path(args.out_json).write_text(json.dumps(records, indent=2) + "\n")
    plot(records, Path(args.out_png), args.title)
    print(summary)


if __name__ == "__main__":
    main()
