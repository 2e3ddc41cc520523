"""DSP's hard top-K changes per training epoch, read from fairseq's log lines: the evidence that a DSP
run's heads stayed fixed after its gate learning.

Usage:
    python -m neuroprune.tools.topk_changes LOG... --select-epochs N [--out changes.tsv] [--overwrite]

Each LOG is a run's fairseq-train log (or the study's ``logs/NAME.txt`` extract of it). From every
``| train | epoch E |`` summary line it takes ``np_dsp_topk_changes`` (heads that entered the hard top-K
during epoch E) and writes one TSV row per run and epoch. Exits 1, naming the runs, when an epoch after
the first ``--select-epochs`` (the fixed-mask part of the protocol) changed the top-K, or when a log has
no such line (not a DSP run, or a run that finished no epoch).
"""
import argparse
import re
from pathlib import Path
from typing import Dict, List

from ..cli import at_least, overwrite_flag
from .outputs import prepare_output, require_inputs

_EPOCH_LINE = re.compile(r"\| train \| epoch (\d+) \|.*?\| np_dsp_topk_changes ([0-9.]+) ")


def changes_per_epoch(log: str) -> Dict[int, float]:
    """Epoch -> top-K changes from the epoch summary lines of one log. A resumed run that logged an
    epoch twice keeps the last line (its counter restarted with the repeated epoch)."""
    return {int(epoch): float(changes) for epoch, changes in _EPOCH_LINE.findall(log)}


def unsettled(changes: Dict[int, float], select_epochs: int) -> List[int]:
    """The epochs after ``select_epochs`` whose top-K changed."""
    return sorted(e for e, c in changes.items() if e > select_epochs and c != 0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[overwrite_flag("replace an existing --out file")])
    p.add_argument("logs", nargs="+", help="fairseq-train logs (or study logs/NAME.txt) of DSP runs")
    p.add_argument("--select-epochs", type=at_least(0), required=True,
                   help="epochs in which the gates learn; later epochs must not change the top-K")
    p.add_argument("--out", default=None, help="TSV file: run, epoch, phase, top-K changes")
    args = p.parse_args(argv)
    require_inputs(*((log, "LOG") for log in args.logs))
    out = prepare_output(args.out, "--out", args.overwrite) if args.out else None
    rows, missing, moved = ["run\tepoch\tphase\ttopk_changes"], [], []
    for path in map(Path, args.logs):
        changes = changes_per_epoch(path.read_text())
        if not changes:
            missing.append(path.name)
            continue
        for epoch, count in sorted(changes.items()):
            phase = "gates learning" if epoch <= args.select_epochs else "fixed"
            rows.append(f"{path.stem}\t{epoch}\t{phase}\t{count:g}")
        late = unsettled(changes, args.select_epochs)
        if late:
            moved.append(f"{path.stem} (epochs {late})")
    text = "\n".join(rows) + "\n"
    if out:
        out.write_text(text)
    print(text, end="")
    problems = ([f"no '| train | epoch' line with np_dsp_topk_changes in {', '.join(missing)}"] if missing else []) \
        + ([f"the top-K changed after epoch {args.select_epochs} in {', '.join(moved)}"] if moved else [])
    if problems:
        raise SystemExit("topk_changes: " + "; ".join(problems))


if __name__ == "__main__":
    main()
