"""Training overhead: plain label-smoothed CE vs NeuroPrune vs DSP on the same model, data and seed, and the
speed of plain CE under CPU bfloat16 autocast (``--np-cpu-bf16-autocast``, configuration ``plain_bf16``).

Usage:
    python -m neuroprune_fairseq.tools.bench_train --data-bin DIR --pretrained DENSE.pt --out bench_train.json \
        [--updates 60 --reps 2 --log-interval 10 --alpha 1e-4 --beta 1e-3 --theta 0.3 --dsp-heads 54]

Each configuration runs ``fairseq-train`` for ``--updates`` updates from ``--pretrained`` (validation
and saving off), ``--reps`` times in rotating order; fairseq's ``wps`` of every logged interval but the
first of each run (start-up) is collected and the median per configuration is reported with its ratio
to plain CE. The elimination pass is timed in-process on the pretrained model (median of 5 passes) and
compared with the NeuroPrune configuration's epoch time (updates per epoch / updates per second).
Goals to report against: NeuroPrune >= 0.95x plain; a pass < 1 % of an epoch.
"""
import argparse
import copy
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from neuroprune.cli import cpu_flag, overwrite_flag
from neuroprune.tools.outputs import prepare_output, require_inputs

PLUGIN_DIR = str(Path(__file__).resolve().parents[1])
INNER = re.compile(r"train_inner \| epoch \d+:\s+\d+ / (\d+) .*?wps=([0-9.]+), ups=([0-9.]+)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                parents=[overwrite_flag("replace an existing --out report"), cpu_flag("train")])
    p.add_argument("--data-bin", required=True, help="fairseq-preprocess output directory (de-en)")
    p.add_argument("--pretrained", required=True, help="checkpoint every configuration starts from (--finetune-from-model)")
    p.add_argument("--out", required=True, help="JSON report to write (refused if it exists, unless --overwrite)")
    p.add_argument("--updates", type=int, default=60, help="updates per run")
    p.add_argument("--log-interval", type=int, default=10, help="updates per logged wps value")
    p.add_argument("--reps", type=int, default=2, help="runs per configuration")
    p.add_argument("--alpha", type=float, default=1e-4, help="NeuroPrune --np-alpha")
    p.add_argument("--beta", type=float, default=1e-3, help="NeuroPrune --np-beta")
    p.add_argument("--theta", type=float, default=0.3, help="NeuroPrune --np-theta (also the timed elimination pass)")
    p.add_argument("--dsp-heads", type=int, default=54, help="DSP --np-dsp-heads")
    p.add_argument("--model-args", default="--arch neuroprune_iwslt_de_en_narrow --share-all-embeddings "
                   "--encoder-normalize-before --decoder-normalize-before --max-tokens 2048",
                   help="fairseq-train flags shared by every configuration (architecture, batch)")
    return p.parse_args(argv)


def configurations(args) -> dict:
    """fairseq-train flags of each configuration; only criterion and method flags differ. "plain" is the
    stock criterion under the plugin's task without --np flags (which trains update for update like stock
    ``translation``, tested; the stock task cannot load a checkpoint that carries head-mask buffers)."""
    ours = ["--task", "neuroprune_translation", "--criterion", "neuroprune_label_smoothed_cross_entropy"]
    return {
        "plain": ["--task", "neuroprune_translation", "--criterion", "label_smoothed_cross_entropy"],
        "plain_bf16": ["--task", "neuroprune_translation", "--criterion", "label_smoothed_cross_entropy", "--np-cpu-bf16-autocast"],
        "neuroprune": ours + ["--np-alpha", str(args.alpha), "--np-beta", str(args.beta), "--np-theta", str(args.theta)],
        "dsp": ["--task", "dsp_translation", "--criterion", "neuroprune_label_smoothed_cross_entropy", "--np-dsp-heads", str(args.dsp_heads)],
    }


def train(args, flags, save_dir) -> list:
    """One short fairseq-train run; ``(updates per epoch, wps, ups)`` of each logged interval."""
    cmd = [
        sys.executable, "-m", "fairseq_cli.train", args.data_bin, "--user-dir", PLUGIN_DIR, "-s", "de", "-t", "en",
        *flags, "--label-smoothing", "0.1", *args.model_args.split(),
        "--optimizer", "adam", "--lr", "5e-4", "--lr-scheduler", "fixed", "--finetune-from-model", args.pretrained,
        "--max-update", str(args.updates), "--seed", "1", "--disable-validation", "--no-save", "--save-dir", str(save_dir),
        "--log-format", "simple", "--log-interval", str(args.log_interval), "--no-progress-bar", "--num-workers", "0",
    ] + (["--cpu"] if args.cpu else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"fairseq-train failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    intervals = [(int(n), float(w), float(u)) for n, w, u in INNER.findall(proc.stdout + proc.stderr)]
    if len(intervals) < 2:
        raise SystemExit(f"--updates {args.updates} / --log-interval {args.log_interval}: fewer than 2 logged intervals")
    return intervals[1:]


def time_elimination(pretrained: str, data_bin: str, theta: float, reps: int = 5) -> float:
    """Median seconds of one elimination pass over every attention module of ``pretrained``'s model (its
    dictionaries read from ``data_bin``, not from the data path saved in the checkpoint)."""
    from .. import head_masks
    from .checkpoints import load_model

    loaded, _, _ = load_model(pretrained, data_bin, cpu=True)
    times = []
    for _ in range(reps):
        model = copy.deepcopy(loaded)
        start = time.perf_counter()
        head_masks.eliminate(model, theta)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    args = parse_args(argv)
    require_inputs((args.data_bin, "--data-bin"), (args.pretrained, "--pretrained"))
    if args.updates < 2 * args.log_interval or args.reps < 1:
        raise SystemExit(f"--updates must be >= 2 x --log-interval and --reps >= 1, got {args.updates}, {args.log_interval}, {args.reps}")
    out = prepare_output(args.out, "--out", args.overwrite)
    configs = configurations(args)
    names = list(configs)
    intervals = {name: [] for name in names}
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            intervals[name] += train(args, configs[name], out.parent / f".bench_train_{name}")
            print(f"bench_train | rep {rep + 1}/{args.reps} {name}: wps {statistics.median(w for _, w, _ in intervals[name]):.0f}")
    results = {name: {"median_wps": statistics.median(w for _, w, _ in iv), "median_ups": statistics.median(u for _, _, u in iv),
                      "intervals": len(iv)} for name, iv in intervals.items()}
    for name in names:
        results[name]["ratio_to_plain"] = round(results[name]["median_wps"] / results["plain"]["median_wps"], 3)
    updates_per_epoch = intervals["neuroprune"][0][0]
    epoch_s = updates_per_epoch / results["neuroprune"]["median_ups"]
    pass_s = time_elimination(args.pretrained, args.data_bin, args.theta)
    report = {
        "data_bin": args.data_bin, "pretrained": args.pretrained, "updates": args.updates, "reps": args.reps,
        "configurations": {name: " ".join(flags) for name, flags in configs.items()}, "results": results,
        "elimination_pass_s": round(pass_s, 4), "epoch_s": round(epoch_s, 1), "updates_per_epoch": updates_per_epoch,
        "elimination_pass_fraction_of_epoch": pass_s / epoch_s,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name in names:
        r = results[name]
        print(f"{name:<11} wps {r['median_wps']:>8.0f}  ratio to plain {r['ratio_to_plain']:.3f}")
    print(f"elimination pass {pass_s:.3f} s = {100 * pass_s / epoch_s:.3f} % of a {epoch_s:.0f} s epoch ({updates_per_epoch} updates)")
    return report


if __name__ == "__main__":
    main()
