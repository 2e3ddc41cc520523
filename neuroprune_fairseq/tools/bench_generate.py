"""Time fairseq-generate on a dense, a masked and an exported checkpoint over the same split.

Usage:
    python -m neuroprune_fairseq.tools.bench_generate --data-bin DIR --dense D.pt --masked M.pt \
        --exported E.pt --out bench.json [--reps 3 --beam 5 --batch-size 64 --subset test --cpu --threads 1]
        [--fixed-len N]

Every repetition runs the three models once, in an order rotated per repetition. Each run records the
command's wall time (start-up and model loading included) and fairseq's own "Translated N sentences
(T tokens) in Xs (..., R tokens/s)" line (generation only; seconds taken as T / R, which fairseq does not
round). Per model: medians, speed-ups against dense, parameters and file size. The masked and exported
hypotheses should match (the export is exact up to float rounding, so only near-ties in the beam can
differ); the number of sentences where they differ is recorded. Models of different quality write
hypotheses of different lengths, i.e. do different work: ``--fixed-len`` makes every hypothesis the same
length so that the times compare the architectures alone.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import time

import torch

from neuroprune.checkpoint_stats import parameter_total
from neuroprune.cli import generation_flags, overwrite_flag
from neuroprune.tools.outputs import prepare_output, require_inputs

from .evaluate import generate_command

MODELS = ("dense", "masked", "exported")
TRANSLATED = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([0-9.]+)s \([0-9.]+ sentences/s, ([0-9.]+) tokens/s\)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                parents=[generation_flags(), overwrite_flag("replace an existing --out report")])
    p.add_argument("--data-bin", required=True, help="fairseq-preprocess output directory")
    p.add_argument("--dense", required=True, help="unpruned checkpoint (the speed-up baseline)")
    p.add_argument("--masked", required=True, help="pruned checkpoint with head masks and zeroed weights, full size")
    p.add_argument("--exported", required=True, help="--masked after neuroprune_fairseq.tools.export")
    p.add_argument("--out", required=True, help="JSON report to write (refused if it exists, unless --overwrite)")
    p.add_argument("--reps", type=int, default=3, help="runs per model; medians are reported")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run (OMP_NUM_THREADS / MKL_NUM_THREADS); 1 gives the steadiest timings on a shared machine")
    p.add_argument("--fixed-len", type=int, default=None, help="force every hypothesis to N tokens (fairseq --min-len N --max-len-a 0 --max-len-b N), so all models do equal work")
    return p.parse_args(argv)


def generate(args, checkpoint: str) -> dict:
    """One fairseq-generate run: timings, counts and hypotheses by sentence id."""
    cmd = generate_command(args, checkpoint)
    if args.fixed_len is not None:
        cmd += ["--min-len", str(args.fixed_len), "--max-len-a", "0", "--max-len-b", str(args.fixed_len)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"fairseq-generate failed on {checkpoint} ({proc.returncode}):\n{proc.stderr[-4000:]}")
    found = TRANSLATED.search(proc.stdout + proc.stderr)
    if found is None:
        raise SystemExit(f"fairseq-generate on {checkpoint} printed no 'Translated ...' line")
    sentences, tokens = int(found.group(1).replace(",", "")), int(found.group(2).replace(",", ""))
    tokens_per_s = float(found.group(4))
    return {
        "wall_s": round(wall, 3),
        "generate_s": round(tokens / tokens_per_s if tokens_per_s > 0 else float(found.group(3)), 4),
        "sentences": sentences, "tokens": tokens, "tokens_per_s": tokens_per_s,
        "hypotheses": dict(re.findall(r"^H-(\d+)\t[^\t]*\t(.*)$", proc.stdout, flags=re.M)),
    }


def model_record(checkpoint: str, runs: list, dense: dict = None) -> dict:
    """Medians over ``runs``, size figures and speed-ups against ``dense`` (a record of this kind)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    record = {
        "checkpoint": checkpoint, "params": parameter_total(state), "file_bytes": os.path.getsize(checkpoint),
        "sentences": runs[0]["sentences"], "tokens": runs[0]["tokens"],
        "median_generate_s": statistics.median(r["generate_s"] for r in runs),
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "median_tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
        "runs": [{k: v for k, v in r.items() if k != "hypotheses"} for r in runs],
    }
    base = dense or record
    record["speedup_generate"] = round(base["median_generate_s"] / record["median_generate_s"], 3)
    record["speedup_wall"] = round(base["median_wall_s"] / record["median_wall_s"], 3)
    return record


def table(models: dict) -> str:
    """The report's per-model figures as aligned text."""
    head = f"{'model':<9} {'params':>11} {'file MB':>8} {'gen s':>8} {'tokens/s':>9} {'wall s':>7} {'x gen':>6} {'x wall':>6}"
    rows = [
        f"{name:<9} {m['params']:>11,} {m['file_bytes'] / 1e6:>8.2f} {m['median_generate_s']:>8.3f} "
        f"{m['median_tokens_per_s']:>9.1f} {m['median_wall_s']:>7.2f} {m['speedup_generate']:>6.2f} {m['speedup_wall']:>6.2f}"
        for name, m in models.items()
    ]
    return "\n".join([head] + rows)


def main(argv=None) -> dict:
    args = parse_args(argv)
    require_inputs(*((getattr(args, flag), "--" + flag.replace("_", "-")) for flag in ("data_bin",) + MODELS))
    for flag in ("reps", "threads", "fixed_len"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    out = prepare_output(args.out, "--out", args.overwrite)
    runs = {name: [] for name in MODELS}
    for rep in range(args.reps):
        for name in MODELS[rep % 3:] + MODELS[:rep % 3]:
            runs[name].append(generate(args, getattr(args, name)))
    models = {"dense": model_record(args.dense, runs["dense"])}
    models.update({name: model_record(getattr(args, name), runs[name], models["dense"]) for name in MODELS[1:]})
    masked, exported = runs["masked"][0]["hypotheses"], runs["exported"][0]["hypotheses"]
    differing = sum(masked.get(i) != exported.get(i) for i in masked.keys() | exported.keys())
    report = {
        "data_bin": args.data_bin, "subset": args.subset, "beam": args.beam, "batch_size": args.batch_size,
        "reps": args.reps, "threads": args.threads, "fixed_len": args.fixed_len,
        "device": "cpu" if args.cpu or not torch.cuda.is_available() else "cuda",
        "models": models, "masked_exported_hypotheses_identical": differing == 0,
        "masked_exported_sentences_differing": differing,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(models))
    print(f"masked and exported hypotheses differ in {differing} of {len(masked)} sentences")
    return report


if __name__ == "__main__":
    main()
