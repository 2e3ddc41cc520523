"""Extract, tokenise, clean and split IWSLT14 de-en like fairseq's prepare-iwslt14.sh.

Reads the WIT3 archive (``de-en.tgz``) directly:

* train: ``de-en/train.tags.de-en.{de,en}``; talk metadata lines (``<url>``,
  ``<talkid>``, ``<keywords>``, ``<speaker>``, ``<reviewer>``, ``<translator>``,
  ``<doc>``...) are dropped, ``<title>``/``<description>`` tags are removed but
  their text is kept (as fairseq does);
* test: the ``<seg id=...>`` text of ``IWSLT14.TED.dev2010``, ``IWSLT14.TEDX.dev2012``,
  ``IWSLT14.TED.tst2010``, ``tst2011`` and ``tst2012`` (``’`` becomes ``'``).

Text is tokenised with sacremoses (aggressive dash splitting, no escaping);
train pairs are length-cleaned like Moses' clean-corpus-n (1..175 tokens,
token ratio <= 1.5), then everything is lowercased; every 23rd train line is
``valid``.  Counts go to ``prepare_stats.json``.

Usage::

    python -m neuroprune.corpus.iwslt14 --archive de-en.tgz --out DIR
"""

import argparse
import json
import re
import tarfile
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from sacremoses import MosesTokenizer

from ..cli import exit_on_value_error

LANGS = ("de", "en")
TRAIN_MEMBER = "de-en/train.tags.de-en.{lang}"
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
             "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")
TEST_MEMBER = "de-en/{name}.de-en.{lang}.xml"
VALID_EVERY = 23
MIN_TOKENS, MAX_TOKENS, MAX_RATIO = 1, 175, 1.5
METADATA = re.compile(r"^\s*</?(url|talkid|keywords|speaker|reviewer|translator|doc)\b")
KEPT_TAGS = re.compile(r"</?(title|description)>")
SEGMENT = re.compile(r"<seg id=\"?\d+\"?>\s*(.*?)\s*</seg>")


def read_member(archive: tarfile.TarFile, path: Path, name: str) -> List[str]:
    """Lines of one archive member (accepting a leading ``./``); clear error when absent.

    Only ``\\n`` ends a line, as for the awk/grep of the fairseq recipe.
    """
    for candidate in (name, f"./{name}"):
        try:
            handle = archive.extractfile(candidate)
        except KeyError:
            continue
        if handle is not None:
            text = handle.read().decode("utf-8").removesuffix("\n")
            return [line.rstrip("\r") for line in text.split("\n")] if text else []
    raise ValueError(f"--archive {path}: member {name} not found; expected the IWSLT14 "
                       "de-en.tgz layout (de-en/train.tags.de-en.de, de-en/IWSLT14.TED.*.xml, ...)")


def train_text(lines: Sequence[str], counts: Counter) -> List[str]:
    """Drop talk metadata lines and strip title/description tags."""
    kept = []
    for line in lines:
        if METADATA.match(line):
            counts["train_metadata_lines"] += 1
        else:
            kept.append(KEPT_TAGS.sub("", line).strip())
    return kept


def segments(lines: Sequence[str]) -> List[str]:
    """Text of the ``<seg id=...>`` elements of an IWSLT xml file."""
    return [match.group(1).replace("’", "'") for line in lines for match in SEGMENT.finditer(line)]


def clean_reason(de: List[str], en: List[str]) -> Optional[str]:
    """Why clean-corpus-n would drop this tokenised pair, or None to keep it."""
    shortest, longest = sorted((len(de), len(en)))
    if shortest < MIN_TOKENS:
        return "train_dropped_empty"
    if longest > MAX_TOKENS:
        return "train_dropped_too_long"
    if longest > MAX_RATIO * shortest:
        return "train_dropped_ratio"
    return None


def prepare(archive_path: Path, out: Path) -> dict:
    """Write {train,valid,test}.{de,en} into ``out`` and return the counts."""
    if not archive_path.is_file():
        raise ValueError(f"--archive {archive_path}: no such file; expected the IWSLT14 de-en.tgz")
    try:
        archive = tarfile.open(archive_path, "r:*")
    except tarfile.TarError as error:
        raise ValueError(f"--archive {archive_path}: not a readable tar archive ({error})") from error
    tokenizers = {lang: MosesTokenizer(lang=lang) for lang in LANGS}

    def tokenize(lang: str, text: str) -> List[str]:
        return tokenizers[lang].tokenize(text, aggressive_dash_splits=True, escape=False)

    counts: Counter = Counter()
    with archive:
        raw = {lang: train_text(read_member(archive, archive_path, TRAIN_MEMBER.format(lang=lang)), counts)
               for lang in LANGS}
        test_raw = {name: {lang: segments(read_member(archive, archive_path,
                                                      TEST_MEMBER.format(name=name, lang=lang)))
                           for lang in LANGS} for name in TEST_SETS}
    if len(raw["de"]) != len(raw["en"]):
        raise ValueError(f"--archive {archive_path}: train.tags de/en have {len(raw['de'])} and "
                           f"{len(raw['en'])} text lines after removing metadata; expected aligned files")
    counts["train_text_lines"] = len(raw["de"])
    cleaned: List[Tuple[str, str]] = []
    for de_line, en_line in zip(raw["de"], raw["en"]):
        de_tokens, en_tokens = tokenize("de", de_line), tokenize("en", en_line)
        reason = clean_reason(de_tokens, en_tokens)
        if reason:
            counts[reason] += 1
        else:
            cleaned.append((" ".join(de_tokens).lower(), " ".join(en_tokens).lower()))
    splits: Dict[str, List[Tuple[str, str]]] = {
        "train": [p for n, p in enumerate(cleaned, 1) if n % VALID_EVERY != 0],
        "valid": [p for n, p in enumerate(cleaned, 1) if n % VALID_EVERY == 0],
        "test": []}
    for name in TEST_SETS:
        de_segs, en_segs = test_raw[name]["de"], test_raw[name]["en"]
        if len(de_segs) != len(en_segs) or not de_segs:
            raise ValueError(f"--archive {archive_path}: {name} has {len(de_segs)} de and "
                               f"{len(en_segs)} en <seg> lines; expected the same non-zero number")
        counts[f"test_{name}"] = len(de_segs)
        splits["test"] += [(" ".join(tokenize("de", d)).lower(), " ".join(tokenize("en", e)).lower())
                           for d, e in zip(de_segs, en_segs)]
    empty = [split for split, pairs in splits.items() if not pairs]
    if empty:
        raise ValueError(f"--archive {archive_path}: the {', '.join(empty)} split(s) came out empty")
    out.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        for index, lang in enumerate(LANGS):
            (out / f"{split}.{lang}").write_text("".join(p[index] + "\n" for p in pairs), encoding="utf-8")
        counts[split] = len(pairs)
    stats = dict(sorted(counts.items()))
    (out / "prepare_stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats


def main(argv: Optional[Sequence[str]] = None) -> None:
    """CLI entry point; bad input exits with status 1 and one line naming the flag or archive member."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archive", type=Path, required=True, help="the WIT3 IWSLT14 de-en.tgz")
    parser.add_argument("--out", type=Path, required=True, help="output folder for tokenised splits")
    args = parser.parse_args(argv)
    with exit_on_value_error():
        stats = prepare(args.archive, args.out)
    print(f"wrote train {stats['train']}, valid {stats['valid']}, test {stats['test']} pairs "
          f"to {args.out} (details in {args.out / 'prepare_stats.json'})")


if __name__ == "__main__":
    main()
