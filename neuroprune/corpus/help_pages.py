"""Paragraph pairs from the LibreOffice help packages (``libreoffice-help-*``).

The packages install one HTML page per help topic under
``usr/share/libreoffice/help/<lang>/`` (``de`` and ``en-US``).  Both languages
use the same page path and the same ``id`` attribute on every paragraph
(``<p id="par_id3149549">``) and heading (``<h2 id="hd_id3150008">``), so a
pair is keyed by (page path relative to the language folder, element id).

Markup inside a paragraph is reduced to its text.  Platform and application
switches (``<span class="switchinline">`` holding hidden ``MAC``/``WRITER``/
``default`` variants) render their ``default`` variant, else their first one,
so both languages make the same choice.  An id repeated on a page with
different texts cannot be paired and is counted as ambiguous.
"""

from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Set, Tuple, Union

TEXT_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
             "meta", "source", "track", "wbr"}
SWITCH_CLASSES = {"switch", "switchinline"}


class _Node:
    """A parsed element inside a text block: tag, attributes, children."""

    def __init__(self, tag: str, attrs: Dict[str, str]):
        self.tag = tag
        self.attrs = attrs
        self.children: List[Union[str, "_Node"]] = []


class _PageParser(HTMLParser):
    """Collect every ``<p>``/``<hN>`` carrying an ``id`` as a small element tree."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks: List[Tuple[str, _Node]] = []
        self._open: List[_Node] = []

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        node = _Node(tag, attributes)
        if self._open:
            self._open[-1].children.append(node)
        elif tag in TEXT_TAGS and attributes.get("id"):
            self.blocks.append((attributes["id"], node))
        else:
            return
        if tag not in VOID_TAGS:
            self._open.append(node)

    def handle_endtag(self, tag):
        for depth in range(len(self._open) - 1, -1, -1):
            if self._open[depth].tag == tag:
                del self._open[depth:]
                return

    def handle_data(self, data):
        if self._open:
            self._open[-1].children.append(data)


def render(node: Union[str, _Node]) -> str:
    """Plain text of a parsed element (whitespace is normalised later)."""
    if isinstance(node, str):
        return node
    if node.tag == "br":
        return " "
    if node.tag == "span" and node.attrs.get("class") in SWITCH_CLASSES:
        variants = [child for child in node.children if isinstance(child, _Node)]
        default = [v for v in variants if v.attrs.get("id", "").startswith("default")]
        chosen = (default or variants)[:1]
        return "".join(render(variant) for variant in chosen)
    return "".join(render(child) for child in node.children)


def read_page(path: Path) -> Tuple[Dict[str, str], Set[str]]:
    """Map element id -> text for one page, plus the ids that are ambiguous.

    An id used several times on a page is kept when every occurrence has the
    same text and is ambiguous (returned separately, without text) otherwise.
    """
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    variants: Dict[str, Set[str]] = {}
    for block_id, node in parser.blocks:
        variants.setdefault(block_id, set()).add(" ".join(render(node).split()))
    texts = {i: next(iter(v)) for i, v in variants.items() if len(v) == 1}
    return texts, set(variants) - set(texts)


def _pages(root: Path) -> Dict[str, Path]:
    """Every HTML page under a language folder, keyed by its relative path."""
    return {path.relative_to(root).as_posix(): path for path in sorted(root.rglob("*.html"))}


def read_help(de_root: Path, en_root: Path) -> Tuple[List[Tuple[str, str]], Counter]:
    """Pair the paragraphs of two help trees by (page path, id); count pages and unmatched ids."""
    counts: Counter = Counter()
    de_pages, en_pages = _pages(de_root), _pages(en_root)
    counts["libreoffice_pages_paired"] = len(de_pages.keys() & en_pages.keys())
    counts["libreoffice_page_one_language"] = len(de_pages.keys() ^ en_pages.keys())
    pairs: List[Tuple[str, str]] = []
    for page in sorted(de_pages.keys() & en_pages.keys()):
        de_texts, de_ambiguous = read_page(de_pages[page])
        en_texts, en_ambiguous = read_page(en_pages[page])
        ambiguous = de_ambiguous | en_ambiguous
        counts["libreoffice_ambiguous_id"] += len(ambiguous)
        de_ids, en_ids = de_texts.keys() - ambiguous, en_texts.keys() - ambiguous
        counts["libreoffice_id_one_language"] += len(de_ids ^ en_ids)
        shared = de_ids & en_ids
        pairs.extend((de_texts[i], en_texts[i]) for i in de_texts if i in shared)
    return pairs, counts
