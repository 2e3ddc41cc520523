"""Build a German-English parallel corpus from extracted Debian packages.

Sources (unpacked with ``dpkg -x``, see ``scripts/build_offline_corpus.sh``):

* ``libreoffice-help-de`` + ``libreoffice-help-en-us``: help paragraphs paired
  by (page, id), see :mod:`neuroprune.corpus.help_pages`;
* ``trans-de-en``: Ding example sentences, see :mod:`neuroprune.corpus.ding`.

Pairs are normalised (NFC, invisible characters removed, whitespace collapsed),
filtered (empty side, identical sides, char-length ratio above
``--max-len-ratio``, exact duplicates) and split so that no German source
sentence occurs in two splits: unique sources are ordered by a seeded hash of
their case-folded text, the first ones fill ``test``, then ``valid``, the rest
is ``train``.  Every dropped pair is counted in ``corpus_stats.json``.

Usage::

    python -m neuroprune.corpus.offline_de_en --extracted DIR --out DIR
"""

import argparse
import hashlib
import json
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

from ..cli import at_least, exit_on_value_error
from .ding import read_ding
from .help_pages import read_help

# Debian package -> where its data lies inside the unpacked package.
PACKAGE_DATA = {
    "libreoffice-help-de": "usr/share/libreoffice/help/de",
    "libreoffice-help-en-us": "usr/share/libreoffice/help/en-US",
    "trans-de-en": "usr/share/trans/de-en",
}
SOURCES = ("libreoffice", "ding")
SPLITS = ("train", "valid", "test")
FILTERS = ("empty", "identical", "length_ratio", "duplicate")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))


class Pair(NamedTuple):
    """One sentence pair and the source it came from (``libreoffice`` or ``ding``)."""

    source: str
    de: str
    en: str


def locate_packages(extracted: Path) -> Dict[str, Path]:
    """Find each package's data in ``DIR/<package>/...`` or directly in ``DIR/...``."""
    if not extracted.is_dir():
        raise ValueError(f"--extracted {extracted}: no such directory; expected the folder "
                          "the .deb packages were unpacked into with dpkg -x")
    if not any(extracted.iterdir()):
        raise ValueError(f"--extracted {extracted}: directory is empty; expected "
                          f"{', '.join(PACKAGE_DATA)} unpacked there with dpkg -x")
    found, missing = {}, []
    for package, relative in PACKAGE_DATA.items():
        candidates = [extracted / package / relative, extracted / relative]
        hit = next((path for path in candidates if path.exists()), None)
        if hit is None:
            missing.append(f"{package}: expected {candidates[0]} (or {candidates[1]})")
        found[package] = hit
    if missing:
        raise ValueError(f"--extracted {extracted}: package data missing:\n  "
                          + "\n  ".join(missing))
    return found


def normalise(text: str) -> str:
    """NFC, drop invisible characters, collapse all whitespace (tabs, newlines) to one space."""
    return " ".join(unicodedata.normalize("NFC", text).translate(_INVISIBLE).split())


def source_key(de: str, seed: int) -> str:
    """Seeded hash of the case-folded German sentence: decides its split."""
    return hashlib.sha256(f"{seed}\t{de.casefold()}".encode("utf-8")).hexdigest()


def filter_pairs(pairs: Sequence[Pair], max_len_ratio: float, dropped: Dict[str, Counter]) -> List[Pair]:
    """Normalise pairs and drop empty, identical, unbalanced and duplicate ones (counted)."""
    kept, seen = [], set()
    for pair in pairs:
        de, en = normalise(pair.de), normalise(pair.en)
        if not de or not en:
            reason = "empty"
        elif de == en:
            reason = "identical"
        elif max(len(de), len(en)) > max_len_ratio * min(len(de), len(en)):
            reason = "length_ratio"
        elif (de, en) in seen:
            reason = "duplicate"
        else:
            seen.add((de, en))
            kept.append(Pair(pair.source, de, en))
            continue
        dropped[reason][pair.source] += 1
    return kept


def split_pairs(pairs: Sequence[Pair], n_valid: int, n_test: int, seed: int) -> Dict[str, List[Pair]]:
    """Assign whole source-sentence groups to test, valid, then train; keep corpus order."""
    groups: Dict[str, List[int]] = {}
    for index, pair in enumerate(pairs):
        groups.setdefault(source_key(pair.de, seed), []).append(index)
    assignment, wanted = {}, [("test", n_test), ("valid", n_valid)]
    filled = Counter()
    for key in sorted(groups):
        split = next((name for name, size in wanted if filled[name] < size), "train")
        filled[split] += len(groups[key])
        for index in groups[key]:
            assignment[index] = split
    return {split: [p for i, p in enumerate(pairs) if assignment[i] == split] for split in SPLITS}


def write_split(out: Path, split: str, pairs: Sequence[Pair]) -> None:
    """Write ``<split>.de`` and ``<split>.en``, one sentence per line."""
    for lang in ("de", "en"):
        lines = [getattr(pair, lang) for pair in pairs]
        (out / f"{split}.{lang}").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def build(extracted: Path, out: Path, n_valid: int = 1500, n_test: int = 1500,
          seed: int = 1, max_len_ratio: float = 3.0, sources: Sequence[str] = SOURCES) -> dict:
    """Build the corpus into ``out`` from the selected ``sources`` and return the statistics
    written to corpus_stats.json."""
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown or not sources:
        raise ValueError(f"--sources {','.join(sources)}: expected a comma-separated subset of {','.join(SOURCES)}")
    data = locate_packages(extracted)
    help_pairs, help_counts = read_help(data["libreoffice-help-de"], data["libreoffice-help-en-us"])
    ding_pairs, ding_counts = read_ding(data["trans-de-en"])
    raw = [Pair("libreoffice", de, en) for de, en in help_pairs]
    raw += [Pair("ding", de, en) for de, en in ding_pairs]
    raw = [pair for pair in raw if pair.source in sources]
    dropped = {reason: Counter() for reason in FILTERS}
    kept = filter_pairs(raw, max_len_ratio, dropped)
    if not kept:
        raise ValueError(f"--extracted {extracted}: no sentence pairs left after filtering "
                          f"({len(raw)} extracted); check the package contents")
    splits = split_pairs(kept, n_valid, n_test, seed)
    if not splits["train"]:
        raise ValueError(f"only {len(kept)} pairs after filtering: --valid {n_valid} and "
                          f"--test {n_test} leave no training data")
    out.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        write_split(out, split, pairs)
    stats = {
        "settings": {"valid": n_valid, "test": n_test, "seed": seed, "max_len_ratio": max_len_ratio,
                     "sources": list(sources)},
        "extraction": {**dict(sorted(help_counts.items())), **dict(sorted(ding_counts.items()))},
        "sources": {src: {"extracted": sum(p.source == src for p in raw),
                          "kept": sum(p.source == src for p in kept)} for src in SOURCES},
        "filters_dropped": {reason: {**{src: dropped[reason][src] for src in SOURCES},
                                     "total": sum(dropped[reason].values())} for reason in FILTERS},
        "splits": {split: {"pairs": len(pairs),
                           **{src: sum(p.source == src for p in pairs) for src in SOURCES}}
                   for split, pairs in splits.items()},
        "total_pairs": len(kept),
    }
    (out / "corpus_stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extracted", type=Path, required=True,
                        help="folder holding the dpkg -x unpacked packages (one sub-folder per package)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for {train,valid,test}.{de,en}")
    group_note = "; whole source-sentence groups, so it can come out a few pairs larger"
    parser.add_argument("--valid", type=at_least(0), default=1500, help=f"valid pairs (default 1500{group_note})")
    parser.add_argument("--test", type=at_least(0), default=1500, help=f"test pairs (default 1500{group_note})")
    parser.add_argument("--seed", type=int, default=1, help="seed of the split hash (default 1)")
    parser.add_argument("--max-len-ratio", type=at_least(1, float), default=3.0,
                        help="drop pairs whose char lengths differ by more than this factor (default 3)")
    parser.add_argument("--sources", default=",".join(SOURCES),
                        help=f"comma-separated sources to include (default {','.join(SOURCES)})")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """CLI entry point; bad input exits with status 1 and one line naming the flag or folder."""
    args = parse_args(argv)
    with exit_on_value_error():
        stats = build(args.extracted, args.out, args.valid, args.test, args.seed, args.max_len_ratio,
                      args.sources.split(","))
    sizes = ", ".join(f"{split} {info['pairs']}" for split, info in stats["splits"].items())
    print(f"wrote {stats['total_pairs']} pairs to {args.out} ({sizes}); "
          f"details in {args.out / 'corpus_stats.json'}")


if __name__ == "__main__":
    main()
