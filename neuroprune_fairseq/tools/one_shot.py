"""One-shot harness: prune a checkpoint to each head budget with each elimination variant, no training,
and evaluate every result.

Usage:
    python -m neuroprune_fairseq.tools.one_shot --checkpoint DENSE.pt --data-bin DIR --out-dir DIR \
        --budgets 81 54 27 --variants linf:paper:paper linf:paper:none linf:paper:data michel \
        [--subset valid --calib-subset train --calib-sentences 256 --beam 5 --cpu]

A variant is ``SIMILARITY:KEEP:FOLD`` (``--np-similarity``, ``--np-keep``, ``--np-fold`` of the task;
``linf:paper:paper`` is the paper's pass) or ``michel`` (Michel et al.'s importance, one round, scored on
the calibration sentences). Each (variant, budget) is one elimination pass aimed at the budget (theta
chosen as by ``--np-head-budget``), written as a checkpoint under ``OUT_DIR/checkpoints/`` and scored by
``tools.evaluate`` on ``--subset`` into ``OUT_DIR/records/VARIANT_kK.json`` (with the pass's wall time
and the calibration's; hypotheses and references beside it, ``.hyp`` and ``.ref``, for ``tools.significance``). The unpruned checkpoint is scored once as ``dense``. Records that exist are
reused (``--overwrite`` redoes them), so a cut run resumes and several instances can share an
``OUT_DIR`` (each with its own variants); each writes ``OUT_DIR/one_shot.tsv`` from all records there.
Choose variants on the validation split; score the chosen one on test once.
"""
import argparse
import copy
import json
import time
from pathlib import Path

from neuroprune import checkpoint_stats
from neuroprune.cli import cpu_flag, overwrite_flag
from neuroprune.tools.outputs import prepare_output, require_inputs

from .. import head_masks
from ..calibration import calibration_batches, head_output_stats
from . import evaluate, michel
from .checkpoints import load_model, save_model_state

TABLE_COLUMNS = ("variant", "budget", "heads_kept", "bleu", "pass_seconds", "calibration_seconds")


def parse_variant(spec: str, ridge: float):
    """``michel`` or a :class:`head_masks.PassVariant` from ``SIMILARITY:KEEP:FOLD`` (with ``ridge``)."""
    if spec == "michel":
        return spec
    parts = spec.split(":")
    if len(parts) != 3:
        raise SystemExit(f"--variants: '{spec}' is not SIMILARITY:KEEP:FOLD (e.g. linf:paper:data) or michel")
    try:
        return head_masks.PassVariant(*parts, ridge=ridge)
    except ValueError as err:
        raise SystemExit(f"--variants: '{spec}': {err}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                parents=[overwrite_flag("redo records that exist"), cpu_flag("prune and generate")])
    p.add_argument("--checkpoint", required=True, help="fairseq checkpoint to prune (usually the dense pretrained one)")
    p.add_argument("--data-bin", required=True, help="fairseq-preprocess output directory")
    p.add_argument("--out-dir", required=True, help="folder for checkpoints/, records/ and one_shot.tsv")
    p.add_argument("--budgets", type=int, nargs="+", required=True, help="total heads to keep, one pass each")
    p.add_argument("--variants", nargs="+", default=["linf:paper:paper"],
                   help="SIMILARITY:KEEP:FOLD (similarity linf|linf_scaled|output, keep paper|importance, fold paper|none|data) or michel")
    p.add_argument("--subset", default="valid", help="split the pruned models are scored on (choose variants on valid)")
    p.add_argument("--calib-subset", default="train", help="split whose sentences calibrate the data-aware variants and Michel")
    p.add_argument("--calib-sentences", type=int, default=256, help="calibration sentences (a seeded random choice)")
    p.add_argument("--calib-max-tokens", type=int, default=4096, help="tokens per calibration batch")
    p.add_argument("--ridge", type=float, default=0.01, help="ridge of the data-aware fits (as --np-fold-ridge)")
    p.add_argument("--beam", type=int, default=5, help="beam size of the evaluation")
    p.add_argument("--max-pieces", type=int, default=0, help="also score the sentences with at most this many pieces (as tools.evaluate)")
    return p.parse_args(argv)


def evaluate_checkpoint(args, checkpoint: Path, record: Path, name: str, method: str, budget, extra: dict) -> dict:
    """``tools.evaluate`` on ``checkpoint``; ``extra`` fields are added to its record."""
    argv = ["--checkpoint", str(checkpoint), "--data-bin", args.data_bin, "--out", str(record), "--overwrite",
            "--text-out", str(record.with_suffix("")),
            "--name", name, "--method", method, "--subset", args.subset, "--beam", str(args.beam),
            "--max-pieces", str(args.max_pieces)] + (["--budget", str(budget)] if budget else []) + (["--cpu"] if args.cpu else [])
    result = {**evaluate.main(argv), **extra}
    record.write_text(json.dumps(result, indent=2) + "\n")
    return result


def write_table(out_dir: Path) -> Path:
    """``one_shot.tsv`` from every record in ``out_dir/records``, by variant then falling budget."""
    rows = [json.loads(p.read_text()) for p in sorted((out_dir / "records").glob("*.json"))]
    rows.sort(key=lambda r: (r["name"] != "dense", r.get("variant", ""), -(r.get("budget") or 10**9)))
    lines = ["\t".join(TABLE_COLUMNS)]
    for r in rows:
        lines.append("\t".join("" if r.get(c) is None else str(r[c]) for c in TABLE_COLUMNS))
    table = out_dir / "one_shot.tsv"
    table.write_text("\n".join(lines) + "\n")
    return table


def main(argv=None):
    args = parse_args(argv)
    require_inputs((args.checkpoint, "--checkpoint"), (args.data_bin, "--data-bin"))
    if args.calib_sentences < 1:
        raise SystemExit(f"--calib-sentences must be >= 1, got {args.calib_sentences}")
    variants = {spec: parse_variant(spec, args.ridge) for spec in args.variants}
    out_dir = Path(args.out_dir)
    prepare_output(str(out_dir / "records" / "dense.json"), "--out-dir")
    prepare_output(str(out_dir / "checkpoints" / "x.pt"), "--out-dir")

    model, cfg, task = load_model(args.checkpoint, args.data_bin, args.cpu)
    criterion = task.build_criterion(cfg.criterion)
    source = checkpoint_stats.load_checkpoint(args.checkpoint)
    modules, total = len(head_masks.attention_modules(model)), head_masks.total_heads(model)
    for budget in args.budgets:
        if not modules <= budget <= total:
            raise SystemExit(f"--budgets: {budget} is outside {modules} (one head per attention module) .. {total}")
    dense_record = out_dir / "records" / "dense.json"
    if args.overwrite or not dense_record.exists():
        evaluate_checkpoint(args, Path(args.checkpoint), dense_record, "dense", "dense", None, {"variant": "dense"})

    todo = [(spec, b) for spec in variants for b in args.budgets
            if args.overwrite or not (out_dir / "records" / f"{spec.replace(':', '-')}_k{b}.json").exists()]
    state = copy.deepcopy(model.state_dict())
    batches = stats = None
    calibration_seconds = 0.0
    if any(spec == "michel" or variants[spec].needs_data for spec, _ in todo):
        start = time.perf_counter()
        batches = calibration_batches(task, model, args.calib_subset, args.calib_sentences, args.calib_max_tokens)
        if any(spec != "michel" and variants[spec].needs_data for spec, _ in todo):
            stats = head_output_stats(model, batches)
        calibration_seconds = time.perf_counter() - start
        print(f"one_shot | calibration: {sum(len(b['id']) for b in batches)} sentences of '{args.calib_subset}' in {calibration_seconds:.1f}s")
    for spec, budget in todo:
        name = f"{spec.replace(':', '-')}_k{budget}"
        model.load_state_dict(state)
        start = time.perf_counter()
        if spec == "michel":
            michel.prune(model, criterion, batches, budget, steps=1, normalize=False)
        else:
            head_masks.eliminate_to_budget(model, budget, budget, variants[spec], stats)
        pass_seconds = time.perf_counter() - start
        checkpoint = out_dir / "checkpoints" / f"{name}.pt"
        save_model_state(source, model, checkpoint)
        calibrated = spec == "michel" or variants[spec].needs_data
        record = evaluate_checkpoint(args, checkpoint, out_dir / "records" / f"{name}.json", name, spec, budget, {
            "variant": spec, "pass_seconds": round(pass_seconds, 3),
            "calibration_seconds": round(calibration_seconds, 2) if calibrated else 0.0,
            "calib_sentences": args.calib_sentences if calibrated else 0,
        })
        print(f"one_shot | {spec} at {budget}: {record['heads_kept']} heads, BLEU {record['bleu']} on {args.subset}, pass {pass_seconds:.2f}s")
    print(f"one_shot | wrote {write_table(out_dir)}")


if __name__ == "__main__":
    main()
