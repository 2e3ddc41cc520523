"""Evaluate one checkpoint: fairseq-generate -> sacrebleu (detokenized) and tokenized BLEU -> JSON record.

Usage:
    python -m neuroprune_fairseq.tools.evaluate --checkpoint CKPT --data-bin DIR --out RECORD.json \
        [--name NAME --method METHOD --subset test --beam 5]

The data must be sentencepiece-encoded (``--remove-bpe sentencepiece`` restores text). Generation keeps
every sentence (``--required-batch-size-multiple 1``). Detokenized BLEU is sacrebleu's default 13a; the
tokenized BLEU re-tokenizes hypotheses and references with Moses (sacremoses) and scores them with no
further tokenization, like ``multi-bleu.perl`` in the IWSLT14 literature. With ``--max-pieces N`` the
record also scores the sentences whose source and reference both have at most N pieces (the length limit
training used) under ``within_max_pieces``; the headline BLEU is always over the whole split. The record
also carries the checkpoint's topology report (see ``tools.report``) under ``topology``, which
``tools.plots`` reads.

Sparsity is counted one way: a weight is zero only if it is exactly zero in the model that was evaluated
(``sparsity_definition: exact_zero``), masked heads included. With ``--zero-below TAU`` the evaluated model is
the checkpoint with every q/k/v/out/fc1/fc2 weight of ``|w| < TAU`` set to zero (what a sparse-training run's
"sparsity" describes); ``--score-unthresholded`` also scores the checkpoint as stored, under ``unthresholded``,
so the thresholding's cost is visible. The record gives the zero share of those six matrices
(``weight_sparsity``, per type in ``weight_sparsity_by_type``), of all parameters (``param_sparsity``, tied
embeddings once) and the parameter count after physical export (``params.exported``: masked heads and FFN units
whose fc1 row and fc2 column are all zero removed, as ``tools.export`` does).
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sacrebleu
import torch

from neuroprune import checkpoint_stats
from neuroprune_fairseq import shrink_checkpoint
from neuroprune.cli import eps_flag, generation_flags, overwrite_flag
from neuroprune.tools.outputs import prepare_output, require_inputs

PLUGIN_DIR = str(Path(__file__).resolve().parents[1])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[
        generation_flags(), overwrite_flag("replace an existing --out record"),
        eps_flag("|w| below this counts as zero in the sparsity figures")])
    p.add_argument("--checkpoint", required=True, help="fairseq checkpoint (.pt) to evaluate")
    p.add_argument("--data-bin", required=True, help="fairseq-preprocess output directory")
    p.add_argument("--out", required=True, help="JSON record to write (refused if it exists, unless --overwrite)")
    p.add_argument("--name", default=None, help="run name stored in the record (default: checkpoint's folder)")
    p.add_argument("--method", default="unknown", help="method label stored in the record (dense, neuroprune, dsp, ...)")
    p.add_argument("--budget", type=int, default=None, help="head budget the run was asked for, stored in the record (default: none)")
    p.add_argument("--max-pieces", type=int, default=0,
                   help="also score the sentences with at most this many pieces on both sides (0: whole split only)")
    p.add_argument("--text-out", default=None,
                   help="also write the hypotheses to TEXT_OUT.hyp and the references to TEXT_OUT.ref, one sentence per line "
                        "in sentence order (for tools.significance)")
    p.add_argument("--zero-below", type=float, default=0.0,
                   help="evaluate the checkpoint with every q/k/v/out/fc1/fc2 weight of |w| below this set to exactly zero "
                        "(0: as stored); sparse-training runs use their --np-eps")
    p.add_argument("--score-unthresholded", action="store_true",
                   help="with --zero-below: also score the checkpoint as stored (record field 'unthresholded')")
    p.add_argument("--save-evaluated", default=None,
                   help="with --zero-below: keep the evaluated (thresholded) checkpoint at this path, e.g. for tools.export")
    return p.parse_args(argv)


def generate_command(args, checkpoint: str) -> list:
    """The fairseq-generate command for ``checkpoint`` under ``args``' generation settings (data_bin,
    subset, beam, batch_size, max_len_a, max_len_b, cpu: :func:`neuroprune.cli.generation_flags`); every sentence is kept."""
    return [
        sys.executable, "-m", "fairseq_cli.generate", args.data_bin, "--user-dir", PLUGIN_DIR, "--task", "neuroprune_translation",
        "--path", checkpoint, "--gen-subset", args.subset, "--beam", str(args.beam),
        "--batch-size", str(args.batch_size), "--required-batch-size-multiple", "1",
        "--max-len-a", str(args.max_len_a), "--max-len-b", str(args.max_len_b), "--no-progress-bar",
    ] + (["--cpu"] if args.cpu else [])


def generate(args, checkpoint: str) -> tuple:
    """Run fairseq-generate on ``checkpoint``; returns hypotheses and references in sentence order, the command's
    wall time and fairseq's own generation time (model loading excluded)."""
    cmd = generate_command(args, checkpoint) + ["--remove-bpe", "sentencepiece"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"fairseq-generate failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    hyps = dict(re.findall(r"^D-(\d+)\t[^\t]*\t(.*)$", proc.stdout, flags=re.M))
    refs = dict(re.findall(r"^T-(\d+)\t(.*)$", proc.stdout, flags=re.M))
    if not refs or hyps.keys() != refs.keys():
        raise SystemExit(f"fairseq-generate produced {len(hyps)} hypotheses for {len(refs)} references")
    order = sorted(refs, key=int)
    translated = re.search(r"Translated .* in ([0-9.]+)s", proc.stdout + proc.stderr)
    return [hyps[i] for i in order], [refs[i] for i in order], wall, float(translated.group(1)) if translated else None


def tokenized_bleu(hyps, refs) -> float:
    """BLEU on Moses-tokenized text with no further tokenization (multi-bleu.perl style)."""
    from sacremoses import MosesTokenizer

    tok = MosesTokenizer(lang="en")
    split = lambda lines: [tok.tokenize(line, return_str=True, escape=False) for line in lines]  # noqa: E731
    return sacrebleu.corpus_bleu(split(hyps), [split(refs)], tokenize="none").score


def piece_counts(data_bin: str, subset: str) -> tuple:
    """Pieces per sentence (end-of-sentence excluded) of ``subset``'s source and target in a fairseq-preprocess
    folder, in sentence-id order: two int arrays."""
    from fairseq.data import data_utils

    found = sorted(Path(data_bin).glob(f"{subset}.*-*.*.idx"))
    if len(found) != 2:
        raise SystemExit(f"--data-bin {data_bin}: expected one language pair's {subset}.SRC-TGT.{{SRC,TGT}}.idx files, found {[f.name for f in found]}")
    pair = found[0].name.split(".")[1]
    src, tgt = pair.split("-")
    counts = []
    for lang in (src, tgt):
        dataset = data_utils.load_indexed_dataset(str(Path(data_bin) / f"{subset}.{pair}.{lang}"), None)
        counts.append(dataset.sizes - 1)  # a copy: the sizes are a view of the memory map, closed with the dataset
    return tuple(counts)


def length_subset_scores(hyps, refs, src_pieces, tgt_pieces, max_pieces: int) -> dict:
    """sacreBLEU and tokenized BLEU of the sentences whose source and reference have <= ``max_pieces`` pieces."""
    keep = [i for i in range(len(refs)) if src_pieces[i] <= max_pieces and tgt_pieces[i] <= max_pieces]
    if not keep:
        raise SystemExit(f"--max-pieces {max_pieces}: no sentence of the split is that short")
    sub_hyps, sub_refs = [hyps[i] for i in keep], [refs[i] for i in keep]
    return {
        "max_pieces": max_pieces,
        "sentences": len(keep),
        "bleu": round(sacrebleu.corpus_bleu(sub_hyps, [sub_refs]).score, 2),
        "tokenized_bleu": round(tokenized_bleu(sub_hyps, sub_refs), 2),
    }


EXACT_ZERO_EPS = 2.0 ** -149  # the smallest float32 subnormal: |w| below it means w == 0 in float32 and float16


def exported_parameters(ckpt: dict, state: dict) -> int:
    """Parameters (tied tensors once) of ``state`` once masked heads and all-zero FFN units are physically removed,
    by the same rewrite as ``tools.export``."""
    model_args = shrink_checkpoint.transformer_args(ckpt.get("cfg") or {})
    return checkpoint_stats.parameter_total(shrink_checkpoint.shrink_state(state, model_args, EXACT_ZERO_EPS))


def checkpoint_record(ckpt: dict, state: dict, eps: float) -> dict:
    """Head, sparsity and parameter figures of the evaluated model ``state`` (of checkpoint ``ckpt``), with its
    full topology report (head masks, near-zero sparsity per matrix type, FFN degree histogram, penalties) under
    ``topology``, and the training seed and update count the checkpoint was saved with (None where it holds none)."""
    topology = checkpoint_stats.topology(state, checkpoint_stats.architecture_heads(ckpt), eps)
    zeros = checkpoint_stats.exact_sparsity(state)
    history = ckpt.get("optimizer_history") or [{}]
    return {
        "seed": ((ckpt.get("cfg") or {}).get("common") or {}).get("seed"),
        "num_updates": history[-1].get("num_updates"),
        "heads_kept": topology["heads_kept"],
        "heads_total": topology["heads_total"],
        "heads_per_module": topology["heads_per_module"],
        "sparsity_definition": checkpoint_stats.EXACT_ZERO,
        "weight_sparsity": zeros["prunable"],
        "weight_sparsity_by_type": zeros["by_type"],
        "param_sparsity": zeros["all_parameters"],
        "params": {"total": zeros["total"], "nonzero": zeros["nonzero"], "exported": exported_parameters(ckpt, state)},
        "epoch": (ckpt.get("extra_state") or {}).get("train_iterator", {}).get("epoch"),
        "topology": topology,
    }


def scores(hyps, refs) -> dict:
    """sacreBLEU with its signature and tokenized BLEU of one system."""
    bleu = sacrebleu.BLEU()
    return {"bleu": round(bleu.corpus_score(hyps, [refs]).score, 2), "bleu_signature": str(bleu.get_signature()),
            "tokenized_bleu": round(tokenized_bleu(hyps, refs), 2)}


def main(argv=None):
    args = parse_args(argv)
    require_inputs((args.checkpoint, "--checkpoint"), (args.data_bin, "--data-bin"))
    if args.max_pieces < 0:
        raise SystemExit(f"--max-pieces {args.max_pieces}: expected 0 (off) or a positive piece count")
    if not args.zero_below >= 0:
        raise SystemExit(f"--zero-below {args.zero_below}: expected a magnitude >= 0")
    if (args.score_unthresholded or args.save_evaluated) and not args.zero_below > 0:
        raise SystemExit("--score-unthresholded and --save-evaluated need --zero-below > 0 (without it the stored checkpoint is evaluated)")
    out = prepare_output(args.out, "--out", args.overwrite)
    text_out = {kind: prepare_output(f"{args.text_out}.{kind}", "--text-out", args.overwrite) for kind in ("hyp", "ref")} if args.text_out else {}
    saved = prepare_output(args.save_evaluated, "--save-evaluated", args.overwrite) if args.save_evaluated else None
    try:
        ckpt = checkpoint_stats.load_checkpoint(args.checkpoint)
        evaluated = checkpoint_stats.threshold_state(ckpt["model"], args.zero_below) if args.zero_below > 0 else ckpt["model"]
        figures = checkpoint_record(ckpt, evaluated, args.eps)
    except ValueError as err:
        raise SystemExit(f"--checkpoint {args.checkpoint}: {err}") from err
    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint
        if args.zero_below > 0:
            path = str(saved or Path(tmp) / "evaluated.pt")
            torch.save({**ckpt, "model": evaluated}, path)
        hyps, refs, wall, generation_seconds = generate(args, path)
        unthresholded = None
        if args.score_unthresholded:
            raw_hyps, raw_refs, _, _ = generate(args, args.checkpoint)
            unthresholded = {**scores(raw_hyps, raw_refs), "weight_sparsity": checkpoint_stats.exact_sparsity(ckpt["model"])["prunable"]}
    for kind, lines in (("hyp", hyps), ("ref", refs)):
        if kind in text_out:
            text_out[kind].write_text("".join(line + "\n" for line in lines))
    record = {
        "name": args.name or Path(args.checkpoint).parent.name,
        "method": args.method,
        "budget": args.budget,
        "checkpoint": args.checkpoint,
        "subset": args.subset,
        "sentences": len(hyps),
        "beam": args.beam,
        **scores(hyps, refs),
        "zero_below": args.zero_below,
        **({"unthresholded": unthresholded} if unthresholded else {}),
        "generate_seconds": round(wall, 2),
        "generation_seconds_fairseq": generation_seconds,
        **({"text_out": args.text_out} if args.text_out else {}),
        **({"within_max_pieces": length_subset_scores(hyps, refs, *piece_counts(args.data_bin, args.subset), args.max_pieces)}
           if args.max_pieces else {}),
        **figures,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{record['name']}: sacreBLEU {record['bleu']} ({record['bleu_signature']}) | tokenized BLEU "
          f"{record['tokenized_bleu']} | heads {record['heads_kept']}/{record['heads_total']} | "
          f"sparsity {record['weight_sparsity']:.4f} (exact zeros, |w| < {args.zero_below:g} zeroed) | "
          f"exported parameters {record['params']['exported']} | {len(hyps)} sentences in {wall:.1f}s")
    if unthresholded:
        print(f"{record['name']}: before zeroing |w| < {args.zero_below:g}: sacreBLEU {unthresholded['bleu']}, "
              f"sparsity {unthresholded['weight_sparsity']:.4f}")
    if args.max_pieces:
        sub = record["within_max_pieces"]
        print(f"{record['name']}: sacreBLEU {sub['bleu']} | tokenized BLEU {sub['tokenized_bleu']} on the {sub['sentences']} "
              f"sentences with <= {args.max_pieces} pieces per side")
    return record


if __name__ == "__main__":
    main()
