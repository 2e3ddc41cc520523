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
"""
import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import sacrebleu

from .. import checkpoint_stats
from .outputs import prepare_output, require_inputs

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
    p.add_argument("--max-pieces", type=int, default=0,
                   help="also score the sentences with at most this many pieces on both sides (0: whole split only)")
    p.add_argument("--eps", type=float, default=1e-4, help="|w| below this counts as zero in the sparsity figures")
    p.add_argument("--text-out", default=None,
                   help="also write the hypotheses to TEXT_OUT.hyp and the references to TEXT_OUT.ref, one sentence per line "
                        "in sentence order (for tools.significance)")
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


def checkpoint_record(path: str, eps: float) -> dict:
    """Head, sparsity and parameter figures of a checkpoint's model state, with its full topology report
    (head masks, sparsity per matrix type, FFN degree histogram, penalties) under ``topology``, and the
    training seed and update count the checkpoint was saved with (None where it holds none)."""
    ckpt = checkpoint_stats.load_checkpoint(path)
    state = ckpt["model"]
    topology = checkpoint_stats.topology(state, checkpoint_stats.architecture_heads(ckpt), eps)
    history = ckpt.get("optimizer_history") or [{}]
    return {
        "seed": ((ckpt.get("cfg") or {}).get("common") or {}).get("seed"),
        "num_updates": history[-1].get("num_updates"),
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
    require_inputs((args.checkpoint, "--checkpoint"), (args.data_bin, "--data-bin"))
    if args.max_pieces < 0:
        raise SystemExit(f"--max-pieces {args.max_pieces}: expected 0 (off) or a positive piece count")
    out = prepare_output(args.out, "--out", args.overwrite)
    text_out = {kind: prepare_output(f"{args.text_out}.{kind}", "--text-out", args.overwrite) for kind in ("hyp", "ref")} if args.text_out else {}
    hyps, refs, wall, generation_seconds = generate(args)
    for kind, lines in (("hyp", hyps), ("ref", refs)):
        if kind in text_out:
            text_out[kind].write_text("".join(line + "\n" for line in lines))
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
        **({"text_out": args.text_out} if args.text_out else {}),
        **({"within_max_pieces": length_subset_scores(hyps, refs, *piece_counts(args.data_bin, args.subset), args.max_pieces)}
           if args.max_pieces else {}),
        **checkpoint_record(args.checkpoint, args.eps),
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{record['name']}: sacreBLEU {record['bleu']} ({record['bleu_signature']}) | tokenized BLEU "
          f"{record['tokenized_bleu']} | heads {record['heads_kept']}/{record['heads_total']} | "
          f"sparsity {record['weight_sparsity']:.4f} | {len(hyps)} sentences in {wall:.1f}s")
    if args.max_pieces:
        sub = record["within_max_pieces"]
        print(f"{record['name']}: sacreBLEU {sub['bleu']} | tokenized BLEU {sub['tokenized_bleu']} on the {sub['sentences']} "
              f"sentences with <= {args.max_pieces} pieces per side")
    return record


if __name__ == "__main__":
    main()
