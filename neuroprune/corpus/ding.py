"""Example-sentence pairs from the Ding German-English dictionary (``trans-de-en``).

Each dictionary line reads ``German :: English``; both sides list the same
number of alternatives separated by `` | `` and alternative k of one side
translates alternative k of the other.  Most alternatives are headwords or
phrases; only full example sentences are kept, cleaned of the dictionary's
annotations (``{m}``, ``[Br.]``, ``(of a person)``, ``<spelling variant>``)
and reduced to their first ``;``- or slash-separated variant; slash
alternatives that cannot be resolved safely are dropped and counted.
"""

import re
from collections import Counter
from pathlib import Path
from typing import Iterator, List, Tuple

SIDE_SEPARATOR = " :: "
ALTERNATIVE_SEPARATOR = " | "
MIN_WORDS = 3

# Annotations: {gender/pos}, [register/region/field], <variants>, (notes).
# Parentheses are removed innermost first so nested notes disappear too.
_ANNOTATIONS = [re.compile(r"\{[^{}]*\}"), re.compile(r"\[[^\[\]]*\]"),
                re.compile(r"<[^<>]*>"), re.compile(r"\([^()]*\)")]
# Sentence alternatives: "Oh yes!' / 'Yes, I see!'" -> keep the first sentence.
_SENTENCE_ALTERNATIVES = re.compile(r"(?<=[.!?…\"'“”’»«])\s*/.*$")
# Word alternatives (Ding writes them unspaced): "neighbour/neighbor" -> "neighbour".
_WORD = r"[^\W\d_]{2,}(?:['’-][^\W\d_]+)*"
_WORD_ALTERNATIVES = re.compile(rf"(?<![\w/])({_WORD})((?:/{_WORD})+)(?![\w/])")
# "das Temperament/die Emotionen": an article after the slash starts a phrase
# alternative whose extent is unknown, so it is left unresolved.
_PHRASE_STARTS = {"der", "die", "das", "den", "dem", "des", "ein", "eine", "einen",
                  "einem", "einer", "the", "a", "an", "to"}
# Any slash left between words (phrase alternatives such as "world / world of
# make-believe") cannot be resolved safely.
_UNRESOLVED_SLASH = re.compile(r"\s/|/\s|[^\W\d_]/[^\W\d_]")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:…])")
_SENTENCE_END = re.compile(r"[.!?…][\"'“”„’‘»«)]*$")
# Dictionary placeholders mark phrase templates, never real sentences.
_PLACEHOLDERS = re.compile(r"(?<![^\W\d_])(?:sth|sb|etw|jd|jdn|jdm|jds)\.", re.IGNORECASE)


def _first_word(match: "re.Match[str]") -> str:
    """Keep the first of ``word/word/...`` unless a later one starts a phrase."""
    later = match.group(2).lower().split("/")[1:]
    return match.group(0) if _PHRASE_STARTS.intersection(later) else match.group(1)


def has_unresolved_slash(text: str) -> bool:
    """True when a slash alternative survived cleaning (it would garble the pair)."""
    return bool(_UNRESOLVED_SLASH.search(text))


def clean_alternative(text: str) -> str:
    """Strip annotations from one alternative and keep its first variant."""
    for pattern in _ANNOTATIONS:
        previous = None
        while previous != text:
            previous, text = text, pattern.sub(" ", text)
    first = next((part for part in text.split(";") if part.strip()), "")
    first = _SENTENCE_ALTERNATIVES.sub("", first)
    first = _WORD_ALTERNATIVES.sub(_first_word, first)
    first = " ".join(first.split())
    return _SPACE_BEFORE_PUNCT.sub(r"\1", first)


def is_sentence(text: str) -> bool:
    """True for a full sentence: >= MIN_WORDS words, capitalised, final punctuation."""
    first_letter = next((char for char in text if char.isalpha()), "")
    return (len(text.split()) >= MIN_WORDS and first_letter.isupper()
            and bool(_SENTENCE_END.search(text)) and not _PLACEHOLDERS.search(text))


def line_pairs(line: str, counts: Counter) -> Iterator[Tuple[str, str]]:
    """Yield the cleaned sentence pairs of one dictionary line, counting what is skipped."""
    sides = line.split(SIDE_SEPARATOR)
    if len(sides) != 2:
        counts["ding_malformed_line"] += 1
        return
    german, english = (side.split(ALTERNATIVE_SEPARATOR) for side in sides)
    if len(german) != len(english):
        counts["ding_alternative_count_mismatch"] += 1
        return
    for de_alt, en_alt in zip(german, english):
        de_text, en_text = clean_alternative(de_alt), clean_alternative(en_alt)
        if not (is_sentence(de_text) and is_sentence(en_text)):
            counts["ding_not_sentence"] += 1
        elif has_unresolved_slash(de_text) or has_unresolved_slash(en_text):
            counts["ding_unresolved_slash"] += 1
        else:
            yield de_text, en_text


def read_ding(path: Path) -> Tuple[List[Tuple[str, str]], Counter]:
    """Return the sentence pairs of a Ding file and counts of lines read and entries skipped."""
    counts: Counter = Counter()
    pairs: List[Tuple[str, str]] = []
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            counts["ding_lines"] += 1
            pairs.extend(line_pairs(line, counts))
    return pairs, counts
