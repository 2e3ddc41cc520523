"""Train and apply a joint sentencepiece BPE model to a line-aligned parallel corpus.

Usage::

    python -m neuroprune.corpus.spm_tool train --inputs train.de train.en \\
        --model-prefix spm/spm --vocab-size 8000
    python -m neuroprune.corpus.spm_tool encode --model spm/spm.model \\
        --src train.de --tgt train.en --out-prefix spm/train --src-lang de --tgt-lang en \\
        [--max-pieces 40 --report spm/train_length_filter.json]

``encode`` writes ``<out-prefix>.<src-lang>`` and ``<out-prefix>.<tgt-lang>``
(space-separated pieces).  With ``--max-pieces N`` pairs where either side has
more than N pieces are dropped; the counts always go to the ``--report`` JSON.
"""

import argparse
import json
from pathlib import Path
from typing import List, Optional, Sequence

import sentencepiece as spm

from ..cli import at_least, exit_on_value_error


def read_lines(path: Path, flag: str) -> List[str]:
    """Lines of a UTF-8 text file without their newline; clear error when missing.

    Lines are split like fairseq reads them (universal newlines), so counts agree.
    """
    if not path.is_file():
        raise ValueError(f"{flag} {path}: no such file")
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


def train(inputs: Sequence[Path], model_prefix: Path, vocab_size: int) -> Path:
    """Train a BPE model on all lines of ``inputs``; return the ``.model`` path."""
    for path in inputs:
        if not read_lines(path, "--inputs"):
            raise ValueError(f"--inputs {path}: file is empty; expected training sentences")
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    try:
        spm.SentencePieceTrainer.train(
            input=",".join(str(path) for path in inputs), model_prefix=str(model_prefix),
            vocab_size=vocab_size, model_type="bpe", character_coverage=1.0,
            input_sentence_size=10_000_000, shuffle_input_sentence=True, num_threads=2,
            minloglevel=2)
    except RuntimeError as error:
        raise ValueError(f"--vocab-size {vocab_size}: sentencepiece training failed: {error}") from error
    return model_prefix.with_name(model_prefix.name + ".model")


def encode(model: Path, src: Path, tgt: Path, out_prefix: Path, src_lang: str, tgt_lang: str,
           max_pieces: int = 0, report: Optional[Path] = None) -> dict:
    """Encode a parallel file pair, optionally dropping over-long pairs; return the counts."""
    if not model.is_file():
        raise ValueError(f"--model {model}: no such sentencepiece model; train it first "
                       "with `python -m neuroprune.corpus.spm_tool train`")
    src_lines, tgt_lines = read_lines(src, "--src"), read_lines(tgt, "--tgt")
    if len(src_lines) != len(tgt_lines):
        raise ValueError(f"--src {src} has {len(src_lines)} lines but --tgt {tgt} has "
                       f"{len(tgt_lines)}; the two sides must be line-aligned")
    processor = spm.SentencePieceProcessor(model_file=str(model))
    src_pieces = processor.encode(src_lines, out_type=str)
    tgt_pieces = processor.encode(tgt_lines, out_type=str)
    kept = [(s, t) for s, t in zip(src_pieces, tgt_pieces)
            if not max_pieces or max(len(s), len(t)) <= max_pieces]
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    for lang, index in ((src_lang, 0), (tgt_lang, 1)):
        text = "".join(" ".join(pair[index]) + "\n" for pair in kept)
        Path(f"{out_prefix}.{lang}").write_text(text, encoding="utf-8")
    counts = {"src": str(src), "tgt": str(tgt), "max_pieces": max_pieces,
              "pairs_in": len(src_lines), "pairs_out": len(kept),
              "dropped_over_max_pieces": len(src_lines) - len(kept)}
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    return counts


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags of the ``train`` and ``encode`` sub-commands."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train a joint BPE model")
    train_cmd.add_argument("--inputs", type=Path, nargs="+", required=True, help="training text files")
    train_cmd.add_argument("--model-prefix", type=Path, required=True, help="writes PREFIX.model/.vocab")
    train_cmd.add_argument("--vocab-size", type=at_least(1), default=8000, help="default 8000")
    encode_cmd = commands.add_parser("encode", help="apply a model to a parallel file pair")
    encode_cmd.add_argument("--model", type=Path, required=True, help="sentencepiece .model file")
    encode_cmd.add_argument("--src", type=Path, required=True, help="source-side text")
    encode_cmd.add_argument("--tgt", type=Path, required=True, help="target-side text, line-aligned")
    encode_cmd.add_argument("--out-prefix", type=Path, required=True, help="writes PREFIX.SRC_LANG/.TGT_LANG")
    encode_cmd.add_argument("--src-lang", default="de", help="default de")
    encode_cmd.add_argument("--tgt-lang", default="en", help="default en")
    encode_cmd.add_argument("--max-pieces", type=at_least(0), default=0,
                            help="drop pairs with more pieces on either side (0 = keep all)")
    encode_cmd.add_argument("--report", type=Path, help="JSON file for the kept/dropped counts")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """CLI entry point; bad input exits with status 1 and one line naming the flag or file."""
    args = parse_args(argv)
    with exit_on_value_error():
        if args.command == "train":
            model = train(args.inputs, args.model_prefix, args.vocab_size)
            print(f"trained {model} (vocab {args.vocab_size})")
        else:
            counts = encode(args.model, args.src, args.tgt, args.out_prefix, args.src_lang,
                            args.tgt_lang, args.max_pieces, args.report)
            print(f"encoded {counts['pairs_out']}/{counts['pairs_in']} pairs into {args.out_prefix}.*"
                  f" ({counts['dropped_over_max_pieces']} dropped over --max-pieces {args.max_pieces})")


if __name__ == "__main__":
    main()
