"""Paired bootstrap resampling (sacrebleu's own) between translation systems on the same references.

Usage:
    python -m neuroprune.tools.significance --refs test.ref \
        --system michel=michel_s1.hyp,michel_s2.hyp --system neuroprune=np_s1.hyp,np_s2.hyp [--samples 1000] [--out sig.json]

The first ``--system`` is the baseline; every other system is compared with it. A system made of several
hypothesis files (one per fine-tuning seed, written by ``tools.evaluate --text-out``) is scored on their
concatenation against the references repeated as many times: the seed-pooled comparison. Every system must
list the same number of files. Prints sacreBLEU, the bootstrap mean with its 95 % confidence half-width
and the p-value of each system against the baseline; ``--out`` writes them as JSON.
"""
import argparse
import json
from pathlib import Path
from typing import Dict, List, Sequence

from ..cli import exit_on_value_error, overwrite_flag
from .outputs import prepare_output, require_inputs


def read_lines(path: str, flag: str) -> List[str]:
    """The lines of ``path`` (without newlines); a missing file is refused naming ``flag``."""
    require_inputs((path, flag))
    return Path(path).read_text().splitlines()


def paired_bootstrap(systems: Dict[str, List[str]], refs: Sequence[str], samples: int) -> List[dict]:
    """sacrebleu's paired bootstrap of every system against the first one (sacrebleu's fixed seed, 12345,
    unless SACREBLEU_SEED is set).

    Args:
        systems: name -> hypotheses (the same length as ``refs``), the baseline first.
        refs: the references.
        samples: bootstrap resamples.
    Returns:
        One dict per system: name, bleu, bootstrap mean, ci (95 % half-width), p_value (None for the baseline).
    """
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    test = PairedTest(list(systems.items()), {"BLEU": BLEU()}, [list(refs)], test_type="bs", n_samples=samples)
    _, results = test()
    return [{"name": name, "bleu": round(r.score, 2), "mean": round(float(r.mean), 2), "ci": round(float(r.ci), 2),
             "p_value": None if r.p_value is None else float(r.p_value)}
            for name, r in zip(results["System"], results["BLEU"])]


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
        hyps = []
        for f in files:
            lines = read_lines(f, "--system")
            if len(lines) != len(refs):
                raise SystemExit(f"--system: {f} has {len(lines)} lines, --refs {args.refs} has {len(refs)}")
            hyps += lines
        systems[name] = hyps
    rows = paired_bootstrap(systems, refs * counts.pop(), args.samples)
    for row in rows:
        p_value = "baseline" if row["p_value"] is None else f"p = {row['p_value']:.4f}"
        print(f"{row['name']}: BLEU {row['bleu']} (bootstrap mean {row['mean']} +- {row['ci']}) {p_value}")
    if out:
        out.write_text(json.dumps({"samples": args.samples, "systems": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
