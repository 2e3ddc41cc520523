"""The study's results over fine-tuning seeds: mean and spread of each configuration at each head budget,
and the paired bootstrap, pooled over seeds, of chosen configurations against every other one, with Holm-adjusted
p-values.

Usage:
    python -m neuroprune.tools.seed_table RECORD... --text-dir DIR --compare np_strong,np_plus_strong \
        [--pairs np_plus_a2e-4:gmp_michel_g0.14,...] [--control dense] [--grid np_strong,dsp_joint,michel] \
        [--samples 1000] [--family budget|all] [--out-tsv T] [--out-md M] [--out-json J] [--overwrite]

A configuration is a record's series (``records.series``: the run name without ``_k<budget>_s<seed>``).
Each row: the seeds found, mean and sample standard deviation of sacreBLEU, the mean heads kept and weight
sparsity, the updates trained (one value when all runs of the study trained the same number, else a
warning), and the mean BLEU minus the control's (``--control``, a series without budget). At each budget,
each ``--compare`` configuration is tested against every other configuration at that budget and against
the control (a pair already tested the other way round is not tested again); each ``--pairs`` A:B tests A against
B at every budget where both have runs (e.g. two methods at matched sparsity), and nothing else: the systems are the seeds both
have (``DIR/NAME.hyp``, references ``DIR/test.ref``), scored on their concatenation, and the bootstrap resamples
source sentences with all their seed copies (``tools.significance.paired_bootstrap``). The p-values are
Holm-adjusted over a family (``--family``): all tests at one budget, or all tests of the table; a difference is
significant when its adjusted p is below 0.05. Equal pooled scores are never called a difference (the p-value is
1/(samples+1) when neither system ever differs, e.g. both at 0 BLEU). ``--grid`` adds a first, compact table:
one row per budget (the control's row first), one column per listed configuration, each cell "mean +- sd (n)".
"""
import argparse
import json
import statistics
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

from ..cli import exit_on_value_error, overwrite_flag
from .outputs import prepare_output
from .records import load_records, series
from .significance import holm, paired_bootstrap, read_lines

Key = Tuple[str, Optional[int]]  # (series, budget)


def group(records: List[dict]) -> Dict[Key, Dict[int, dict]]:
    """Records by (series, budget), then by seed; a seed given twice for one configuration is refused."""
    groups: Dict[Key, Dict[int, dict]] = defaultdict(dict)
    for r in records:
        key = (series(r), r.get("budget"))
        if r.get("seed") in groups[key]:
            raise ValueError(f"records: {r['name']} repeats seed {r.get('seed')} of {key[0]}" + (f" at K {key[1]}" if key[1] else ""))
        groups[key][r.get("seed")] = r
    return dict(groups)


def summary_row(key: Key, runs: Dict[int, dict], control_mean: Optional[float]) -> dict:
    """Mean and sample standard deviation (None for one seed: no spread measured) of one configuration's BLEU,
    with its topology."""
    bleus = [runs[s]["bleu"] for s in sorted(runs, key=str)]
    mean = statistics.fmean(bleus)
    return {
        "config": key[0], "budget": key[1], "seeds": sorted(runs, key=str), "n": len(bleus),
        "bleu_mean": round(mean, 2), "bleu_std": round(statistics.stdev(bleus), 2) if len(bleus) > 1 else None,
        "bleus": bleus,
        "heads_kept": round(statistics.fmean(r["heads_kept"] for r in runs.values()), 1),
        "weight_sparsity": round(statistics.fmean(r["weight_sparsity"] for r in runs.values()), 4),
        "vs_control": None if control_mean is None else round(mean - control_mean, 2),
    }


def by_seed(text_dir: str, runs: Dict[int, dict], seeds: List) -> List[List[str]]:
    """The hypotheses of ``runs`` at ``seeds``, one list per seed in that order."""
    return [read_lines(f"{text_dir}/{runs[s]['name']}.hyp", "--text-dir") for s in seeds]


FAMILIES = {"budget": "all tests at one budget", "all": "all tests of the table"}


def pair_test(budget, name: str, runs, other: str, other_runs, refs, text_dir: str, samples: int) -> Optional[dict]:
    """``name`` against ``other`` on the seeds both have (None when they share none): both pooled BLEUs and the p-value."""
    seeds = sorted(set(runs) & set(other_runs), key=str)
    if not seeds:
        return None
    rows = paired_bootstrap({other: by_seed(text_dir, other_runs, seeds), name: by_seed(text_dir, runs, seeds)}, refs, samples)
    return {"budget": budget, "config": name, "against": other, "seeds": seeds, "bleu": round(rows[1]["bleu"], 2),
            "against_bleu": round(rows[0]["bleu"], 2), "p_value": rows[1]["p_value"]}


def comparisons(groups, compare: List[str], control: Optional[str], text_dir: str, samples: int) -> List[dict]:
    """At each budget, each ``compare`` configuration against every other configuration there and the control,
    on the seeds both have, each pair once; one dict per pair with both pooled BLEUs and the p-value."""
    refs = read_lines(f"{text_dir}/test.ref", "--text-dir")
    control_runs = groups.get((control, None)) if control else None
    results, tested = [], set()
    for (name, budget), runs in sorted(groups.items(), key=lambda kv: (str(kv[0][1]), kv[0][0])):
        if name not in compare or budget is None:
            continue
        others = [(k, v) for k, v in groups.items() if k[1] == budget and k[0] != name]
        if control_runs:
            others.append(((control, None), control_runs))
        for (other, other_budget), other_runs in others:
            if (budget, frozenset((name, other))) in tested:
                continue
            test = pair_test(budget, name, runs, other, other_runs, refs, text_dir, samples)
            if test:
                tested.add((budget, frozenset((name, other))))
                results.append(test)
    return results


def pair_comparisons(groups, pairs: List[Tuple[str, str]], text_dir: str, samples: int) -> List[dict]:
    """Each (A, B) of ``pairs`` at every budget where both have runs, on the seeds both have."""
    refs = read_lines(f"{text_dir}/test.ref", "--text-dir")
    budgets = sorted({b for _, b in groups if b is not None}, reverse=True)
    tests = [pair_test(b, a, groups[(a, b)], other, groups[(other, b)], refs, text_dir, samples)
             for a, other in pairs for b in budgets if (a, b) in groups and (other, b) in groups]
    return [t for t in tests if t]


def adjust(tests: List[dict], family: str) -> None:
    """Adds to each test its p-value Holm-adjusted over ``family`` (a key of FAMILIES), the family's size, and
    whether it is significant: adjusted p < 0.05 and pooled scores that differ."""
    families = defaultdict(list)
    for t in tests:
        families[t["budget"] if family == "budget" else None].append(t)
    for members in families.values():
        for t, adjusted in zip(members, holm([t["p_value"] for t in members])):
            t.update(p_holm=adjusted, family_size=len(members), significant=adjusted < 0.05 and t["bleu"] != t["against_bleu"])


def bleu_over_seeds(row: dict) -> str:
    """One configuration's BLEU over seeds as "mean +- sd", or "mean (1 seed)" (no spread measured)."""
    return f"{row['bleu_mean']:.2f} " + ("(1 seed)" if row["bleu_std"] is None else f"+- {row['bleu_std']:.2f}")


def cell(row: Optional[dict]) -> str:
    """A grid cell: "mean +- sd (n)", "mean (1 seed)", or empty when the configuration has no runs there."""
    if row is None:
        return ""
    return bleu_over_seeds(row) + ("" if row["bleu_std"] is None else f" ({row['n']})")


def grid(rows: List[dict], columns: List[str], control: Optional[str]) -> str:
    """The compact table: budgets (largest first; the control's row on top, at its heads kept) by ``columns``."""
    by = {(r["config"], r["budget"]): r for r in rows}
    names = columns + ([control] if control else [])
    control_row = by.get((control, None))
    table = [[f"{control_row['heads_kept']:g}"] + [cell(by.get((c, None))) for c in names]] if control_row else []
    for budget in sorted({r["budget"] for r in rows if r["budget"] is not None}, reverse=True):
        table.append([str(budget)] + [cell(by.get((c, budget))) for c in names])  # the control has no budget: ""
    lines = ["| K | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table]) + "\n\n"


def markdown(rows: List[dict], tests: List[dict], control: Optional[str], family: str) -> str:
    """The per-configuration table and the tests as markdown, the tests' family stated under them."""
    lines = ["| config | K | seeds | sacreBLEU mean +- sd | heads kept | weight sparsity | vs " + (control or "control") + " |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        vs = "" if r["vs_control"] is None else f"{r['vs_control']:+.2f}"
        lines.append(f"| {r['config']} | {r['budget'] or '-'} | {r['n']} | {bleu_over_seeds(r)} | "
                     f"{r['heads_kept']:g} | {r['weight_sparsity']:.4f} | {vs} |")
    if tests:
        lines += ["", "| K | config | against | seeds | BLEU (pooled) | against | p | p (Holm) | Holm p < 0.05 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t in tests:
            lines.append(f"| {t['budget']} | {t['config']} | {t['against']} | {len(t['seeds'])} | {t['bleu']:.2f} | "
                         f"{t['against_bleu']:.2f} | {t['p_value']:.4f} | {t['p_holm']:.4f} | {'yes' if t['significant'] else 'no'} |")
        lines += ["", f"p: paired bootstrap, source sentences resampled with their seed copies. p (Holm): adjusted over "
                      f"{FAMILIES[family]}. A difference counts only when p (Holm) < 0.05."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[overwrite_flag("replace existing output files")])
    p.add_argument("records", nargs="+", help="test-split evaluation records, one per run, with their seed fields")
    p.add_argument("--text-dir", required=True, help="folder of NAME.hyp per record and test.ref (tools.evaluate --text-out)")
    p.add_argument("--compare", default="", help="comma-separated configurations tested against every other one at their budgets")
    p.add_argument("--pairs", default="", help="comma-separated A:B configuration pairs, A tested against B at each budget where both have runs")
    p.add_argument("--control", default=None, help="the configuration without budget that 'vs control' and the tests measure against")
    p.add_argument("--grid", default="", help="comma-separated configurations, the columns of a first compact table (budget by configuration)")
    p.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--family", choices=sorted(FAMILIES), default="budget",
                   help="the tests that Holm's adjustment treats as one family: " + "; ".join(f"{k}: {v}" for k, v in FAMILIES.items()))
    p.add_argument("--out-tsv", default=None, help="TSV file of the per-configuration rows")
    p.add_argument("--out-md", default=None, help="markdown file of both tables")
    p.add_argument("--out-json", default=None, help="JSON file of rows and tests")
    args = p.parse_args(argv)
    outs = {flag: prepare_output(path, flag, args.overwrite) for flag, path in
            (("--out-tsv", args.out_tsv), ("--out-md", args.out_md), ("--out-json", args.out_json)) if path}
    with exit_on_value_error():
        groups = group(load_records(args.records, {"seed": int}))
    compare = [c for c in args.compare.split(",") if c]
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",") if p]
    for pair in pairs:
        if len(pair) != 2 or not all(pair) or pair[0] == pair[1]:
            raise SystemExit(f"--pairs: '{':'.join(pair)}' is not A:B with two different configurations")
    known = {k[0] for k in groups}
    columns = [c for c in args.grid.split(",") if c]
    for name in compare + [c for pair in pairs for c in pair] + columns + ([args.control] if args.control else []):
        if name not in known:
            raise SystemExit(f"--compare/--pairs/--grid/--control: no records of configuration '{name}' (found: {', '.join(sorted(known))})")
    control_runs = groups.get((args.control, None)) if args.control else None
    control_mean = statistics.fmean(r["bleu"] for r in control_runs.values()) if control_runs else None
    rows = [summary_row(k, v, control_mean) for k, v in sorted(groups.items(), key=lambda kv: (-(kv[0][1] or 10**9), kv[0][0]))]
    updates = sorted({r.get("num_updates") for runs in groups.values() for r in runs.values()}, key=str)
    if len(updates) != 1:
        print(f"seed_table: WARNING the runs trained different numbers of updates: {updates}")
    tests = comparisons(groups, compare, args.control, args.text_dir, args.samples) if compare else []
    tests += pair_comparisons(groups, pairs, args.text_dir, args.samples) if pairs else []
    adjust(tests, args.family)
    table = (grid(rows, columns, args.control) if columns else "") + markdown(rows, tests, args.control, args.family)
    print(table, end="")
    if "--out-md" in outs:
        outs["--out-md"].write_text(table)
    if "--out-tsv" in outs:
        cols = ["config", "budget", "n", "bleu_mean", "bleu_std", "heads_kept", "weight_sparsity", "vs_control"]
        outs["--out-tsv"].write_text("\t".join(cols) + "\n" + "".join("\t".join("" if r[c] is None else str(r[c]) for c in cols) + "\n" for r in rows))
    if "--out-json" in outs:
        outs["--out-json"].write_text(json.dumps({"updates": updates, "holm_family": FAMILIES[args.family], "rows": rows, "tests": tests}, indent=2) + "\n")
    return rows, tests


if __name__ == "__main__":
    main()
