"""Evaluate one checkpoint: fairseq-generate -> sacrebleu (detokenized) and tokenized BLEU -> JSON record.

Usage:
    python -m neuroprune_fairseq.tools.evaluate --checkpoint CKPT --data-bin DIR --out RECORD.json \
        [--name NAME --method METHOD --subset test --beam 5]

The data must be sentencepiece-encoded (``--remove-bpe sentencepiece`` restores text). Generation keeps
every sentence (``--required-batch-size-multiple 1``). Detokenized BLEU is sacrebleu's default 13a; the
tokenized BLEU re-tokenizes hypotheses and references with Moses (sacremoses) and scores them with no
further tokenization, like ``multi-bleu.perl`` in the IWSLT14 literature. The record also carries the
checkpoint's topology report (see ``tools.report``) under ``topology``, which ``tools.plots`` reads.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import sacrebleu

from .. import checkpoint_stats
from .outputs import prepare_output

PLUGIN_DIR = str(Path(__file__).resolve().parents[1])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="fairseq checkpoint (.pt) to evaluate")
    p.add_argument("--data-bin", required=True, help="fairseq-preprocess output directory")
    p.add_argument("--out", required=True, help="JSON record to write (refused if it exists, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out record")
    p.add_argument("--name", default=None, help="run name stored in the record (default: checkpoint's folder)")
    p.add_argument("--method", default="unknown", help="method label stored in the record (dense, neuroprune, dsp, ...)")
    p.add_argument("--budget", type=int, default=None, help="head budget the run was asked for, stored in the record (default: none)")
    p.add_argument("--subset", default="test", help="fairseq split to translate")
    p.add_argument("--beam", type=int, default=5, help="beam size")
    p.add_argument("--batch-size", type=int, default=64, help="sentences per generation batch")
    p.add_argument("--max-len-a", type=float, default=1.2, help="fairseq --max-len-a (stops runaway hypotheses)")
    p.add_argument("--max-len-b", type=int, default=10, help="fairseq --max-len-b")
    p.add_argument("--eps", type=float, default=1e-4, help="|w| below this counts as zero in the sparsity figures")
    p.add_argument("--cpu", action="store_true", help="generate on CPU even if CUDA is available")
    return p.parse_args(argv)


def generate_command(args, checkpoint: str) -> list:
    """The fairseq-generate command for ``checkpoint`` under ``args``' generation settings (data_bin,
    subset, beam, batch_size, max_len_a, max_len_b, cpu); every sentence is kept."""
    return [
        sys.executable, "-m", "fairseq_cli.generate", args.data_bin, "--user-dir", PLUGIN_DIR, "--task", "neuroprune_translation",
        "--path", checkpoint, "--gen-subset", args.subset, "--beam", str(args.beam),
        "--batch-size", str(args.batch_size), "--required-batch-size-multiple", "1",
        "--max-len-a", str(args.max_len_a), "--max-len-b", str(args.max_len_b), "--no-progress-bar",
    ] + (["--cpu"] if args.cpu else [])


def generate(args) -> tuple:
    """Run fairseq-generate; returns hypotheses and references in sentence order, the command's wall
    time and fairseq's own generation time (model loading excluded)."""
    cmd = generate_command(args, args.checkpoint) + ["--remove-bpe", "sentencepiece"]
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


def checkpoint_record(path: str, eps: float) -> dict:
    """Head, sparsity and parameter figures of a checkpoint's model state, with its full topology report
    (head masks, sparsity per matrix type, FFN degree histogram, penalties) under ``topology``."""
    ckpt = checkpoint_stats.load_checkpoint(path)
    state = ckpt["model"]
    topology = checkpoint_stats.topology(state, checkpoint_stats.architecture_heads(ckpt), eps)
    return {
        "heads_kept": topology["heads_kept"],
        "heads_total": topology["heads_total"],
        "heads_per_module": topology["heads_per_module"],
        "weight_sparsity": topology["weight_sparsity"]["overall"],
        "params": checkpoint_stats.parameter_counts(state, eps),
        "epoch": (ckpt.get("extra_state") or {}).get("train_iterator", {}).get("epoch"),
        "topology": topology,
    }


def main(argv=None):
    args = parse_args(argv)
    for path, what in ((args.checkpoint, "--checkpoint"), (args.data_bin, "--data-bin")):
        if not os.path.exists(path):
            raise SystemExit(f"{what}: {path} does not exist")
    out = prepare_output(args.out, "--out", args.overwrite)
    hyps, refs, wall, generation_seconds = generate(args)
    bleu = sacrebleu.BLEU()
    score = bleu.corpus_score(hyps, [refs])
    record = {
        "name": args.name or Path(args.checkpoint).parent.name,
        "method": args.method,
        "budget": args.budget,
        "checkpoint": args.checkpoint,
        "subset": args.subset,
        "sentences": len(hyps),
        "beam": args.beam,
        "bleu": round(score.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "tokenized_bleu": round(tokenized_bleu(hyps, refs), 2),
        "generate_seconds": round(wall, 2),
        "generation_seconds_fairseq": generation_seconds,
        **checkpoint_record(args.checkpoint, args.eps),
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{record['name']}: sacreBLEU {record['bleu']} ({record['bleu_signature']}) | tokenized BLEU "
          f"{record['tokenized_bleu']} | heads {record['heads_kept']}/{record['heads_total']} | "
          f"sparsity {record['weight_sparsity']:.4f} | {len(hyps)} sentences in {wall:.1f}s")
    return record


if __name__ == "__main__":
    main()
