"""Paired bootstrap resampling between translation systems on the same references, pooled over seeds by source
sentence, with Holm-adjusted p-values.

Usage:
    python -m neuroprune.tools.significance --refs test.ref \
        --system michel=michel_s1.hyp,michel_s2.hyp --system neuroprune=np_s1.hyp,np_s2.hyp [--samples 1000] [--out sig.json]

The first ``--system`` is the baseline; every other system is compared with it. A system made of several
hypothesis files (one per fine-tuning seed, written by ``tools.evaluate --text-out``) is scored on their
concatenation against the references repeated as many times (the pooled corpus BLEU). The bootstrap resamples
source sentences: a drawn sentence brings all its seed copies along (a cluster bootstrap), so copies of one
sentence are not treated as independent draws. With one file per system it is sacrebleu's paired bootstrap
exactly: the same resampling indices (seed 12345, or SACREBLEU_SEED), means, confidence intervals and p-values.
Every system must list the same number of files. Prints sacreBLEU, the bootstrap mean with its 95 %
confidence half-width, the p-value of each system against the baseline and the p-value Holm-adjusted over the
family of all comparisons in the call; ``--out`` writes them as JSON.
"""
import argparse
import json
import os
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from ..cli import exit_on_value_error, overwrite_flag
from .outputs import prepare_output, require_inputs


def read_lines(path: str, flag: str) -> List[str]:
    """The lines of ``path`` (without newlines); a missing file is refused naming ``flag``."""
    require_inputs((path, flag))
    return Path(path).read_text().splitlines()


def read_system(files: Sequence[str], refs: Sequence[str], flag: str) -> List[List[str]]:
    """One hypothesis list per file (per seed); a missing file or one not as long as ``refs`` is refused naming
    ``flag``."""
    seeds = [read_lines(f, flag) for f in files]
    for f, lines in zip(files, seeds):
        if len(lines) != len(refs):
            raise SystemExit(f"{flag}: {f} has {len(lines)} lines, the references have {len(refs)}")
    return seeds


def bleu_statistics(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """sacrebleu's per-sentence BLEU sufficient statistics (lengths, n-gram matches and totals), one row a sentence."""
    from sacrebleu.metrics import BLEU

    return np.array(BLEU()._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.int64)


def _sacrebleu_seed():
    """The bootstrap's RNG seed as sacrebleu sets it: SACREBLEU_SEED (``none``: unseeded), else 12345."""
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    return None if seed.lower() == "none" else int(seed)


def paired_bootstrap(systems: Dict[str, List[List[str]]], refs: Sequence[str], samples: int) -> List[dict]:
    """Paired bootstrap of every system against the first, resampling source sentences with all their seed copies.

    Each resample draws len(refs) sentence indices with replacement (sacrebleu's generator and seed); a system's
    resampled statistics are the sum, over the drawn sentences, of that sentence's statistics summed over the
    system's seeds. The p-value is sacrebleu's: with d the observed |BLEU difference| and D_i the resamples'
    |differences|, p = (#{D_i - mean(D) > d} + 1) / (samples + 1). With one seed this is sacrebleu's paired
    bootstrap, number for number.

    Args:
        systems: name -> one hypothesis list per seed (each as long as ``refs``, seeds in the same order for every
            system), the baseline first.
        refs: the references of one copy of the test set.
        samples: bootstrap resamples.
    Returns:
        One dict per system, unrounded: name, bleu (pooled corpus BLEU), bootstrap mean, ci (95 % half-width),
        p_value (None for the baseline).
    """
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import estimate_ci

    metric = BLEU()
    idxs = np.random.default_rng(_sacrebleu_seed()).choice(len(refs), size=(samples, len(refs)), replace=True)
    scored = []
    for name, seeds in systems.items():
        stats = np.stack([bleu_statistics(hyps, refs) for hyps in seeds])  # seeds x sentences x statistics
        bleu = metric._compute_score_from_stats(stats.sum(axis=(0, 1)).tolist()).score
        by_sentence = stats.sum(axis=0).astype("float32")  # sacrebleu's dtype; the counts stay exact integers
        resampled = np.array([metric._compute_score_from_stats(by_sentence[i].sum(0)).score for i in idxs])
        scored.append((name, bleu, resampled))
    _, base_bleu, base_resampled = scored[0]
    rows = []
    for k, (name, bleu, resampled) in enumerate(scored):
        mean, ci = estimate_ci(resampled)
        p_value = None
        if k:
            diffs = np.abs(resampled - base_resampled)
            p_value = float((np.sum(diffs - diffs.mean() > abs(bleu - base_bleu)) + 1) / (samples + 1))
        rows.append({"name": name, "bleu": bleu, "mean": float(mean), "ci": float(ci), "p_value": p_value})
    return rows


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm's step-down adjustment of a family of p-values, in their given order.

    The i-th smallest p (i from 0) becomes max over j <= i of min(1, (m - j) p_(j)) for a family of m tests; a
    test is significant at level a after adjustment when its adjusted p is below a.
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def parse_system(spec: str):
    """``NAME=FILE[,FILE...]`` -> (name, files)."""
    name, sep, files = spec.partition("=")
    if not sep or not name or not files:
        raise ValueError(f"--system: '{spec}' is not NAME=FILE[,FILE...]")
    return name, files.split(",")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[overwrite_flag("replace an existing --out file")])
    p.add_argument("--refs", required=True, help="reference file, one sentence per line (tools.evaluate --text-out's .ref)")
    p.add_argument("--system", action="append", required=True,
                   help="NAME=FILE[,FILE...]: a system's hypothesis files (one per seed); the first --system is the baseline")
    p.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--out", default=None, help="JSON file to write the comparison to")
    args = p.parse_args(argv)
    if len(args.system) < 2:
        raise SystemExit("--system: give a baseline and at least one system to compare with it")
    if args.samples < 1:
        raise SystemExit(f"--samples must be >= 1, got {args.samples}")
    out = prepare_output(args.out, "--out", args.overwrite) if args.out else None
    refs = read_lines(args.refs, "--refs")
    with exit_on_value_error():
        specs = [parse_system(s) for s in args.system]
    counts = {len(files) for _, files in specs}
    if len(counts) != 1:
        raise SystemExit(f"--system: every system needs the same number of hypothesis files, got {sorted(counts)}")
    systems = {}
    for name, files in specs:
        if name in systems:
            raise SystemExit(f"--system: the name '{name}' is given twice")
        systems[name] = read_system(files, refs, "--system")
    rows = paired_bootstrap(systems, refs, args.samples)
    for row, adjusted in zip(rows, [None] + holm([r["p_value"] for r in rows[1:]])):
        row.update({k: round(row[k], 2) for k in ("bleu", "mean", "ci")}, p_holm=adjusted)
    for row in rows:
        p_value = "baseline" if row["p_value"] is None else f"p = {row['p_value']:.4f}, Holm {row['p_holm']:.4f}"
        print(f"{row['name']}: BLEU {row['bleu']} (bootstrap mean {row['mean']} +- {row['ci']}) {p_value}")
    if out:
        out.write_text(json.dumps({"samples": args.samples, "holm_family": "every system against the baseline",
                                   "systems": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
