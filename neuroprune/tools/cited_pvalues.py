"""Recompute every p-value that a README cites from the committed hypotheses, and fail on any that does not match.

Usage:
    python -m neuroprune.tools.cited_pvalues [--manifest examples/iwslt14_de_en/results/cited_pvalues.tsv] [--samples 1000]

The manifest is a TSV file with a header row and one citation of one comparison per row:
- ``readme``: the README that cites it; empty (with ``cited``, ``p`` and ``p_holm``) for a comparison that is
  only a member of a family;
- ``cited``: an excerpt of that README holding the cited value(s), matched with runs of whitespace collapsed;
- ``p``: the cited p-value as written (``0.38``), or ``<=X`` for a bound;
- ``family``: the distinct comparisons (same refs, baseline and system) of rows with the same family are
  Holm-adjusted together (``tools.significance.holm``); empty: none;
- ``p_holm``: the cited Holm-adjusted p-value, written like ``p``, or empty;
- ``refs``, ``baseline``, ``system``: the references and each system's hypothesis files (comma-separated, one per
  seed, in the same seed order).
Paths are relative to the manifest's folder. Each row's p-value is recomputed with the study's paired bootstrap
(``tools.significance.paired_bootstrap``: source sentences resampled with their seed copies; sacrebleu's own with
one file per system). A cited value with d decimals matches when the recomputed one is within half a unit of its
last decimal; ``<=X`` when it is at most X. Every ``p = X``, ``p <= X`` and ``Holm X`` in a listed README must lie
inside some row's excerpt, so that no cited p-value escapes the check. Prints one line per row; exits 1 on a
value that does not match, an excerpt missing from its README or a p-value that no row covers.
"""
import argparse
import csv
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

from .outputs import require_inputs
from .significance import holm, paired_bootstrap, read_lines, read_system

COLUMNS = ("readme", "cited", "p", "family", "p_holm", "refs", "baseline", "system")
CITED_P = re.compile(r"\b(?:p\s*(?:=|<=)|Holm)\s*\d*\.\d+")
DEFAULT_MANIFEST = "examples/iwslt14_de_en/results/cited_pvalues.tsv"


def collapse(text: str) -> str:
    """``text`` with every run of whitespace made one space."""
    return " ".join(text.split())


def read_manifest(path: str) -> List[dict]:
    """The manifest's rows; a missing column, an empty required field or a malformed cited value is refused naming
    the file and line."""
    require_inputs((path, "--manifest"))
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"--manifest: {path} has no column {', '.join(missing)}")
        rows = list(reader)
    for line, row in enumerate(rows, 2):
        for column in ("refs", "baseline", "system"):
            if not row[column]:
                raise SystemExit(f"--manifest: {path} line {line}: empty '{column}'")
        if bool(row["readme"]) != bool(row["cited"]):
            raise SystemExit(f"--manifest: {path} line {line}: 'readme' and 'cited' go together")
        for column in ("p", "p_holm"):
            if row[column] and not re.fullmatch(r"(<=)?\d*\.\d+", row[column]):
                raise SystemExit(f"--manifest: {path} line {line}: '{column}' is '{row[column]}', not a number or <=number")
        if (row["p"] or row["p_holm"]) and not row["cited"] or row["p_holm"] and not row["family"]:
            raise SystemExit(f"--manifest: {path} line {line}: a cited value needs its 'cited' excerpt (and 'p_holm' its 'family')")
    return rows


def matches(cited: str, value: float) -> bool:
    """Whether ``value`` is what ``cited`` states: at most X for ``<=X``, else within half a unit of its last decimal."""
    if cited.startswith("<="):
        return value <= float(cited[2:]) + 1e-12
    decimals = len(cited.split(".")[1])
    return abs(value - float(cited)) <= 0.5 * 10 ** -decimals + 1e-12


def uncovered(readme: str, excerpts: List[str]) -> List[str]:
    """The cited p-values of ``readme`` (CITED_P) that lie inside none of ``excerpts``' occurrences in it."""
    text = collapse(readme)
    covered = set()
    for excerpt in excerpts:
        for m in re.finditer(re.escape(collapse(excerpt)), text):
            covered.update(range(m.start(), m.end()))
    return [m.group(0) for m in CITED_P.finditer(text) if m.start() not in covered]


def citation_problems(rows: List[dict], folder: Path) -> List[str]:
    """What is wrong between the manifest's rows and the READMEs they name: excerpts not found, and cited p-values
    (CITED_P) that no row's excerpt covers."""
    readmes: Dict[str, List[str]] = defaultdict(list)
    for row in rows:
        if row["readme"]:
            readmes[row["readme"]].append(row["cited"])
    problems = []
    for readme, excerpts in readmes.items():
        require_inputs((str(folder / readme), "--manifest"))
        text = collapse((folder / readme).read_text())
        problems += [f"{readme}: excerpt not found: '{e}'" for e in excerpts if collapse(e) not in text]
        problems += [f"{readme}: '{token}' is cited but no manifest row covers it" for token in uncovered(text, excerpts)]
    return problems


def comparison(row: dict) -> tuple:
    """What identifies a row's comparison: its references and both systems' files."""
    return row["refs"], row["baseline"], row["system"]


def recompute(row: dict, folder: Path, samples: int) -> float:
    """The p-value of the row's system against its baseline."""
    refs = read_lines(str(folder / row["refs"]), "--manifest")
    systems = {name: read_system([str(folder / f) for f in row[name].split(",")], refs, "--manifest")
               for name in ("baseline", "system")}
    if len(systems["baseline"]) != len(systems["system"]):
        raise SystemExit(f"--manifest: '{row['cited']}': baseline and system list different numbers of seeds")
    return paired_bootstrap(systems, refs, samples)[1]["p_value"]


def recompute_all(rows: List[dict], folder: Path, samples: int) -> int:
    """Sets each row's ``p_value`` and, in a family, ``p_holm_value`` (Holm over the family's distinct
    comparisons); each distinct comparison is bootstrapped once. Returns how many there are."""
    p_values = {}
    for row in rows:
        if comparison(row) not in p_values:
            p_values[comparison(row)] = recompute(row, folder, samples)
        row["p_value"] = p_values[comparison(row)]
    families: Dict[str, Dict[tuple, float]] = defaultdict(dict)
    for row in rows:
        if row["family"]:
            families[row["family"]][comparison(row)] = row["p_value"]
    adjusted = {(family, key): value for family, members in families.items()
                for key, value in zip(members, holm(list(members.values())))}
    for row in rows:
        if row["family"]:
            row["p_holm_value"] = adjusted[(row["family"], comparison(row))]
    return len(p_values)


def verdict(cited: str, value: Optional[float]) -> str:
    """One cell of the report: the recomputed value, and whether it matches the cited one."""
    if value is None:
        return "-"
    return f"{value:.4f}" + ("" if not cited else " ok" if matches(cited, value) else f" MISMATCH (cited {cited})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", default=DEFAULT_MANIFEST, help="TSV file of the cited comparisons (columns in the module's help)")
    p.add_argument("--samples", type=int, default=1000, help="bootstrap resamples (the README's p-values used 1000)")
    args = p.parse_args(argv)
    if args.samples < 1:
        raise SystemExit(f"--samples must be >= 1, got {args.samples}")
    rows = read_manifest(args.manifest)
    folder = Path(args.manifest).resolve().parent
    problems = citation_problems(rows, folder)
    comparisons = recompute_all(rows, folder, args.samples)
    for row in rows:
        cells = [verdict(row["p"], row["p_value"]), verdict(row["p_holm"], row.get("p_holm_value"))]
        print(f"{row['readme'] or '-'} | {row['cited'] or '(family member)'} | p {cells[0]} | Holm {cells[1]}")
        problems += [f"{row['readme']}: '{row['cited']}': {c}" for c in cells if "MISMATCH" in c]
    for problem in problems:
        print(f"cited_pvalues: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(1)
    print(f"cited_pvalues: all {len(rows)} rows ({comparisons} comparisons) reproduce their cited p-values")
    return rows


if __name__ == "__main__":
    main()
