"""The candidate with the highest sacreBLEU among evaluation records of one split: the study's choices
(penalty strength, DSP mode) are made with it on the validation split.

Usage:
    python -m neuroprune.tools.pick_best VALID_RECORD... [--out choice.json] [--overwrite]

Prints the best record's name (on a tie, the first given); ``--out`` also writes the choice with every
candidate's score. Records of different splits are refused, and so is a test-split record unless
``--allow-test`` is given.
"""
import argparse
import json
from typing import List

from ..cli import exit_on_value_error, overwrite_flag
from .outputs import prepare_output
from .records import load_records


def best(records: List[dict]) -> dict:
    """The record with the highest ``bleu``; the first of equals."""
    return max(records, key=lambda r: r["bleu"])  # max keeps the first of equal keys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[overwrite_flag("replace an existing --out file")])
    p.add_argument("records", nargs="+", help="evaluation records (tools.evaluate --out) of the candidates")
    p.add_argument("--out", default=None, help="JSON file for the choice and every candidate's BLEU")
    p.add_argument("--allow-test", action="store_true", help="accept records of the test split (choices belong to valid)")
    args = p.parse_args(argv)
    out = prepare_output(args.out, "--out", args.overwrite) if args.out else None
    with exit_on_value_error():
        records = load_records(args.records, {"subset": str})
    subsets = sorted({r["subset"] for r in records})
    if len(subsets) != 1:
        raise SystemExit(f"records: the candidates come from different splits {subsets}; compare them on one")
    if subsets[0] == "test" and not args.allow_test:
        raise SystemExit("records: these are test-split records; choices are made on valid (--allow-test to override)")
    chosen = best(records)
    if out:
        out.write_text(json.dumps({"chosen": chosen["name"], "subset": subsets[0],
                                   "candidates": {r["name"]: r["bleu"] for r in records}}, indent=2) + "\n")
    print(chosen["name"])
    return chosen["name"]


if __name__ == "__main__":
    main()
