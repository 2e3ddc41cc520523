"""Plots from evaluation records: BLEU vs heads kept, BLEU vs weight sparsity, the heads/sparsity frontier at
matched BLEU, maps of removed heads and FFN degree histograms.

Usage:
    python -m neuroprune.tools.plots KIND RECORD.json [RECORD.json ...] --out PLOT.png \
        [--title TITLE] [--bleu-tolerance 1.0]

KIND is one of bleu-vs-heads, bleu-vs-sparsity, frontier, sparsity-front, params-front, head-map, ffn-degrees. Every
number comes from the records (``tools.evaluate`` output; head-map and ffn-degrees read their ``topology`` section).
sparsity-front and params-front draw, per method, the Pareto front of BLEU against weight sparsity (higher is better)
or against the exported model's parameters (fewer is better): one point per configuration (the mean over its seeds),
Pareto points joined, the others as faint markers; the methods named by ``--references`` are horizontal lines.
"""
import argparse
import itertools
import logging
import statistics
import zlib
from collections import defaultdict
from typing import Dict, List, Sequence

from ..cli import exit_on_value_error
from .outputs import prepare_output
from .records import load_records, series

NEEDS = {
    "bleu-vs-heads": {},
    "bleu-vs-sparsity": {},
    "frontier": {},
    "sparsity-front": {},
    "params-front": {"params.exported": int},
    "head-map": {"topology.head_masks": list},
    "ffn-degrees": {"topology.ffn.histogram.edges": list, "topology.ffn.histogram.counts": list,
                    "topology.ffn.degree_std": (int, float)},
}
SUBJECT = {
    "bleu-vs-heads": "BLEU vs attention heads kept",
    "bleu-vs-sparsity": "BLEU vs weight sparsity",
    "frontier": "Heads vs sparsity frontier at matched BLEU",
    "sparsity-front": "BLEU vs weight sparsity, Pareto fronts",
    "params-front": "BLEU vs exported parameters, Pareto fronts",
    "head-map": "Attention heads removed",
    "ffn-degrees": "FFN neuron degrees",
}
DATA_SET = "offline German-English corpus"
METHOD_COLOURS = {"dense": "black", "neuroprune": "C0", "l1": "C1", "dsp": "C2", "michel": "C3",
                  "magnitude": "C4", "wanda": "C5", "sparsegpt": "C6", "sparsellm": "C7"}
EXTRA_COLOURS = ("C8", "C9", "navy", "gold", "teal", "magenta", "lime", "maroon", "tan", "deeppink")


def by_method(records) -> Dict[str, List[dict]]:
    """Records grouped by their ``method`` field, in order of first appearance."""
    groups = defaultdict(list)
    for record in records:
        groups[record["method"]].append(record)
    return dict(groups)


def colour(method: str) -> str:
    """The method's colour, the same in every plot; other methods get one of C4-C9 from their name."""
    return METHOD_COLOURS.get(method, f"C{4 + zlib.crc32(method.encode()) % 6}")


def distinct_colours(methods: Sequence[str]) -> Dict[str, str]:
    """A colour per method for one plot of many methods: its fixed colour, or, in order, a colour that no other
    method of the plot has (``colour``'s name hash can give two methods one colour)."""
    fixed = {m: METHOD_COLOURS[m] for m in methods if m in METHOD_COLOURS}
    free = [c for c in (*EXTRA_COLOURS, *METHOD_COLOURS.values()) if c not in fixed.values() and c != "black"]
    spare = itertools.cycle(free)
    return {m: fixed.get(m) or next(spare) for m in methods}


def label(record) -> str:
    """``name (method)``, or just the name when the two are equal."""
    return record["name"] if record["name"] == record["method"] else f"{record['name']} ({record['method']})"


def dense_bleu(records):
    """Mean BLEU of the ``dense`` records, or None when there is none."""
    dense = [r["bleu"] for r in records if r["method"] == "dense"]
    return sum(dense) / len(dense) if dense else None


def value(record: dict, field: str):
    """A (dotted, e.g. ``params.exported``) field of a record."""
    for key in field.split("."):
        record = record[key]
    return record


def pareto(records, x: str = "heads_kept", y: str = "weight_sparsity", lower_x: bool = True) -> List[dict]:
    """The records that no other record beats on both ``x`` (lower is better, or higher with ``lower_x=False``) and
    ``y`` (higher is better), sorted by ``x`` from best to worst."""
    sign = 1 if lower_x else -1
    front, best = [], float("-inf")
    for record in sorted(records, key=lambda r: (sign * value(r, x), -value(r, y))):
        if value(record, y) > best:
            front.append(record)
            best = value(record, y)
    return front


def configuration_means(records, x: str) -> List[dict]:
    """One point per configuration (a record series over its seeds; a record without a seed alone): its method, name,
    and the means of the (dotted) field ``x``, under the key ``x``, and of BLEU."""
    groups = defaultdict(list)
    for record in records:
        groups[(record["method"], series(record) if record.get("seed") is not None else record["name"])].append(record)
    return [{"method": method, "name": name, "x": statistics.fmean(value(r, x) for r in group),
             "bleu": statistics.fmean(r["bleu"] for r in group), "seeds": len(group)}
            for (method, name), group in groups.items()]


def draw_bleu_vs_heads(plt, records, args):
    """One line per method through its (heads kept, BLEU) points; dense as a dashed reference line."""
    return draw_bleu_against(plt, records, "heads_kept", "attention heads kept")


def draw_bleu_vs_sparsity(plt, records, args):
    """One line per method through its (weight sparsity, BLEU) points (post-training pruning at several
    sparsities); dense as a dashed reference line."""
    return draw_bleu_against(plt, records, "weight_sparsity", "weight sparsity (q/k/v/out, fc1/fc2; removed heads count as zero)")


def seed_points(records, field):
    """One point per run, or per head budget where a record series holds several seeds of it: the means of
    ``field`` and BLEU over those seeds and the BLEU's sample standard deviation (0 for one run)."""
    runs = defaultdict(list)
    for r in records:
        runs[r.get("budget") if r.get("seed") is not None else id(r)].append(r)
    points = []
    for group in runs.values():
        bleus = [r["bleu"] for r in group]
        points.append((statistics.fmean(r[field] for r in group), statistics.fmean(bleus),
                       statistics.stdev(bleus) if len(bleus) > 1 else 0.0))
    return sorted(points)


def draw_bleu_against(plt, records, field, xlabel):
    """BLEU against the records' ``field``, one line per record series (the method, or the run name without
    its budget and seed) sorted by it, with the seed spread as error bars; dense as a dashed reference line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    reference = dense_bleu(records)
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1, label=f"dense ({reference:.2f})")
    groups = defaultdict(list)
    for record in records:
        groups[series(record)].append(record)
    methods_drawn = set()
    for name, group in groups.items():
        method = group[0]["method"]
        xs, ys, errs = zip(*seed_points(group, field))
        style = {"marker": "*", "markersize": 10, "linestyle": "none"} if method == "dense" else {"marker": "o"}
        if method in methods_drawn and method != "dense":  # a second series of one method: same colour, dashed
            style = {"marker": "s", "linestyle": "--"}
        methods_drawn.add(method)
        if any(errs):
            ax.errorbar(xs, ys, yerr=errs, capsize=3, label=name, color=colour(method), **style)
        else:
            ax.plot(xs, ys, label=name, color=colour(method), **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("sacreBLEU")
    ax.legend(fontsize=8)
    return fig


def draw_frontier(plt, records, args):
    """Per method, the Pareto points (fewer heads, more sparsity) among runs within the BLEU tolerance of dense."""
    reference = dense_bleu(records)  # not None: checked by check_records
    eligible = [r for r in records if r["bleu"] >= reference - args.bleu_tolerance]
    print(f"frontier: {len(eligible)} of {len(records)} records within {args.bleu_tolerance:g} BLEU of dense ({reference:.2f})")
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    for method, group in by_method(eligible).items():
        front = pareto(group)
        style = {"marker": "*", "markersize": 10} if method == "dense" else {"marker": "o"}
        ax.plot([r["heads_kept"] for r in front], [r["weight_sparsity"] for r in front],
                label=f"{method} ({len(front)} Pareto-optimal of {len(group)})", color=colour(method), **style)
    ax.set_xlabel("attention heads kept (fewer is better)")
    ax.set_ylabel("weight sparsity (higher is better)")
    ax.set_title(f"runs with BLEU >= dense {reference:.2f} - {args.bleu_tolerance:g}", fontsize=9)
    ax.legend()
    return fig


def draw_front(plt, records, args, x: str, xlabel: str, lower_x: bool):
    """Per method, its configurations' mean (x, BLEU) points, the Pareto ones joined; reference methods as lines."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    references = [m for m in args.references.split(",") if m]
    points = [p for p in configuration_means(records, x) if p["method"] not in references]
    methods = list(dict.fromkeys(p["method"] for p in points))
    colours = distinct_colours(references + methods)
    for method in references:
        bleus = [r["bleu"] for r in records if r["method"] == method]
        if bleus:
            ax.axhline(statistics.fmean(bleus), color=colours[method], linestyle="--", linewidth=1,
                       label=f"{method} ({statistics.fmean(bleus):.2f})")
    for method in methods:
        group = [p for p in points if p["method"] == method]
        front = pareto(group, "x", "bleu", lower_x)
        ax.plot([p["x"] for p in front], [p["bleu"] for p in front], marker="o", color=colours[method],
                label=f"{method} ({len(front)} Pareto of {len(group)})")
        others = [p for p in group if p not in front]
        ax.plot([p["x"] for p in others], [p["bleu"] for p in others], marker="o", linestyle="none", alpha=0.35,
                color=colours[method])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("sacreBLEU")
    ax.legend(fontsize=7)
    return fig


def draw_sparsity_front(plt, records, args):
    return draw_front(plt, records, args, "weight_sparsity",
                      "weight sparsity (exact zeros of q/k/v/out, fc1/fc2 in the evaluated model)", lower_x=False)


def draw_params_front(plt, records, args):
    return draw_front(plt, records, args, "params.exported", "parameters of the exported model", lower_x=True)


def draw_head_map(plt, records, args):
    """One panel per record: modules as rows, head index as columns, kept heads in one colour, removed in another."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows = max(len(r["topology"]["head_masks"]) for r in records)
    fig, axes = plt.subplots(1, len(records), figsize=(1.5 + 2.4 * len(records), 2.0 + 0.28 * rows), squeeze=False,
                             layout="constrained")
    colours = ["tab:red", "tab:green"]  # removed, kept
    for ax, record in zip(axes[0], records):
        modules = record["topology"]["head_masks"]
        width = max(len(m["mask"]) for m in modules)
        grid = np.full((len(modules), width), np.nan)  # (modules, heads); NaN where a module has fewer heads
        for i, module in enumerate(modules):
            grid[i, : len(module["mask"])] = module["mask"]
        ax.imshow(grid, cmap=ListedColormap(colours), vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(modules)), [m["label"] for m in modules], fontsize=7)
        ax.set_xticks(range(width))
        ax.set_xlabel("head index")
        ax.set_title(f"{label(record)}\n{record['heads_kept']}/{record['heads_total']} heads kept", fontsize=9)
    axes[0][0].set_ylabel("attention module")
    fig.legend(handles=[Patch(color=colours[1], label="kept"), Patch(color=colours[0], label="removed")],
               loc="outside lower center", ncols=2, fontsize=8)
    return fig


def draw_ffn_degrees(plt, records, args):
    """The records' FFN degree histograms overlaid as step lines (dense in black), zoomed to the occupied
    bins, on a log count scale so that a few weakly connected units show next to thousands of full ones."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    occupied = []
    for i, record in enumerate(records):
        ffn = record["topology"]["ffn"]
        edges, counts = ffn["histogram"]["edges"], ffn["histogram"]["counts"]
        dense = record["method"] == "dense"
        ax.stairs(counts, edges, linewidth=2.5 if dense else 1.5, color="black" if dense else f"C{i}",
                  label=f"{label(record)}, degree std {ffn['degree_std']:.1f}")
        occupied += [(edges[b], edges[b + 1]) for b, count in enumerate(counts) if count > 0]
    if occupied:
        low, high = min(lo for lo, _ in occupied), max(hi for _, hi in occupied)
        margin = (high - low) * 0.05 + 1
        ax.set_xlim(low - margin, high + margin)
    ax.set_yscale("log")
    ax.set_xlabel("FFN neuron degree (fc1 row + fc2 column entries not near zero)")
    ax.set_ylabel("hidden units (log scale)")
    ax.legend(fontsize=8)
    return fig


DRAW = {"bleu-vs-heads": draw_bleu_vs_heads, "bleu-vs-sparsity": draw_bleu_vs_sparsity, "frontier": draw_frontier,
        "sparsity-front": draw_sparsity_front, "params-front": draw_params_front,
        "head-map": draw_head_map, "ffn-degrees": draw_ffn_degrees}


def check_records(kind, records, paths) -> None:
    """What a plot needs beyond its fields: a dense record for the frontier, histograms with one more edge
    than counts; ``ValueError`` naming the file otherwise."""
    if kind == "frontier" and dense_bleu(records) is None:
        raise ValueError("frontier: no dense record (method 'dense') among the records; its BLEU is the reference")
    if kind != "ffn-degrees":
        return
    for record, path in zip(records, paths):
        histogram = record["topology"]["ffn"]["histogram"]
        if len(histogram["edges"]) != len(histogram["counts"]) + 1:
            raise ValueError(f"{path}: field 'topology.ffn.histogram' needs one more edge than counts")


def at_budget(records, budget: int, references) -> List[int]:
    """Indices of the records of head budget ``budget`` and of the budget-less records of the ``references`` methods;
    ``ValueError`` when no record has that budget."""
    if not any(r.get("budget") == budget for r in records):
        raise ValueError(f"--budget {budget}: no record has that budget")
    return [i for i, r in enumerate(records) if r.get("budget") == budget or (r.get("budget") is None and r["method"] in references)]


def pyplot():
    """matplotlib's pyplot on the Agg backend, with matplotlib's DEBUG logging silenced."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # before the import, which logs at DEBUG under fairseq's setup
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=list(DRAW), help="which plot to draw")
    p.add_argument("records", nargs="+", help="evaluation record JSON files (tools.evaluate output)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--title", default=None, help=f"figure title (default: the plot's subject and '{DATA_SET}')")
    p.add_argument("--bleu-tolerance", type=float, default=1.0,
                   help="frontier only: keep runs whose BLEU is at most this many points below the dense record's")
    p.add_argument("--budget", type=int, default=None,
                   help="keep only the records of this head budget and those of the --references methods without a budget "
                        "(the dense control)")
    p.add_argument("--references", default="dense",
                   help="sparsity-front and params-front: comma-separated methods drawn as horizontal BLEU lines (their "
                        "mean) instead of fronts, e.g. dense,michel")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with exit_on_value_error("plots: "):
        records = load_records(args.records, NEEDS[args.kind])
        if args.budget is not None:
            keep = at_budget(records, args.budget, args.references.split(","))
            records, args.records = [records[i] for i in keep], [args.records[i] for i in keep]
        check_records(args.kind, records, args.records)
    out = prepare_output(args.out, "--out")
    plt = pyplot()
    fig = DRAW[args.kind](plt, records, args)
    fig.suptitle(args.title or f"{SUBJECT[args.kind]}\n{DATA_SET}")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"{args.kind} plot of {len(records)} records written to {out}")


if __name__ == "__main__":
    main()
