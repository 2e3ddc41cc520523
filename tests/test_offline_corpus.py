"""Offline de-en corpus builder: help-page pairing, Ding cleaning, filters, splits, errors.

Inputs are tiny fakes written in the layout of the real unpacked packages
(``<extracted>/<package>/usr/share/...``).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from neuroprune.corpus import ding, help_pages, offline_de_en

HEAD = ('<!DOCTYPE html>\n<html lang="{lang}" dir="ltr">\n<head>\n<base href="../../../../">\n'
        '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n<title>T</title>\n'
        '</head>\n<body>\n<div id="DisplayArea" itemprop="softwareHelp">\n')
TAIL = "</div>\n</body>\n</html>\n"

# Page 1: paragraphs in a different order per language; markup, a platform
# switch, an icon-only paragraph (empty), an identical pair, an id present in
# German only, and an id used twice with different texts (ambiguous).
FILTER_DE = """<h1 id="hd_id1" dir="auto">Standardfilter</h1>
<p id="par_id1" class="paragraph" dir="auto"><a name="standardfilter"></a><span class="avis">Hier können Sie die
      Filteroptionen festlegen.</span></p>
<p id="par_id2" class="paragraph" dir="auto">Klicken Sie mit der <span id="swlnsys1" class="switchinline"><span hidden="true" id="MACtext1" class="MAC">Befehlstaste</span><span hidden="true" id="defaulttext1">rechten Maustaste</span></span> auf <a target="_top" href="de/text/x.html"><span class="emph">Filter</span></a>.</p>
<div class="iconcell"><p id="par_id3" class="paragraphintable" dir="auto"><img src="media/x.svg" alt="Symbol" class="iconimage"></p></div>
<p id="par_id4" class="paragraph" dir="auto">LibreOffice Calc</p>
<p id="par_id5" class="paragraph" dir="auto">Nur auf Deutsch vorhanden.</p>
<p id="par_id6" class="paragraph" dir="auto">Erste Fassung.</p>
<p id="par_id6" class="paragraph" dir="auto">Zweite Fassung.</p>
"""
FILTER_EN = """<p id="par_id2" class="paragraph" dir="auto">Click with the <span id="swlnsys1" class="switchinline"><span hidden="true" id="MACtext1" class="MAC">Command key</span><span hidden="true" id="defaulttext1">right mouse button</span></span> on <a target="_top" href="en-US/text/x.html"><span class="emph">Filter</span></a>.</p>
<h1 id="hd_id1" dir="auto">Standard Filter</h1>
<p id="par_id1" class="paragraph" dir="auto"><a name="standardfilter"></a><span class="avis">Allows you to set the filtering options.</span>
</p>
<div class="iconcell"><p id="par_id3" class="paragraphintable" dir="auto">
<img src="media/x.svg" alt="Icon" class="iconimage"></p></div>
<p id="par_id4" class="paragraph" dir="auto">LibreOffice Calc</p>
<p id="par_id6" class="paragraph" dir="auto">First version.</p>
"""
# Page 2 reuses ids of page 1 with other texts (pairing is per page), repeats
# the page-1 heading pair (a duplicate) and has an unbalanced pair.
OTHER_DE = """<h1 id="hd_id1" dir="auto">Standardfilter</h1>
<p id="par_id1" class="paragraph" dir="auto">Wählen Sie <span class="menuitem">Format – Zeichen</span>.</p>
<p id="par_id2" class="paragraph" dir="auto">OK</p>
"""
OTHER_EN = """<h1 id="hd_id1" dir="auto">Standard Filter</h1>
<p id="par_id1" class="paragraph" dir="auto">Choose <span class="menuitem">Format - Character</span>.</p>
<p id="par_id2" class="paragraph" dir="auto">Confirms all of the settings in this dialog and closes it.</p>
"""
DING_LINES = [
    "# Version :: devel 2023-01-30",
    "Haus {n}; Gebäude {n} | Das Haus (im Dorf) ist sehr alt. :: house; building | The house is very old [Br.].",
    "Nachbar {m} | Er ist mein Nachbar/Freund. :: neighbour [Br.]; neighbor [Am.] | He is my neighbour/neighbor.",
    "gelten als {vi} | Er gilt als reich.; Er soll reich sein. :: to be reputed | He is reputed to be rich.",
    "etw. tun {vt} :: to do sth.",
    "Scheinwelt {f} | Sie lebt in einer Fantasiewelt / Scheinwelt. :: make-believe | "
    "She lives in a fantasy world / world of make-believe.",
    "Ja, das stimmt so. :: Yes, that is quite right and I would say so again and again, forever and ever.",
    "Nachbar {m} | Er ist mein Nachbar/Freund. :: neighbour [Br.]; neighbor [Am.] | He is my neighbour/neighbor.",
    "kaputt {adj} | Das Ding ist kaputt. :: broken",
]
HELP = "usr/share/libreoffice/help"


def write_page(root: Path, relative: str, lang: str, body: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEAD.format(lang=lang) + body + TAIL, encoding="utf-8")


def make_extracted(tmp_path: Path, ding_lines=DING_LINES, pages=None) -> Path:
    """A fake ``dpkg -x`` tree: one folder per package, real in-package paths."""
    extracted = tmp_path / "extracted"
    de_root = extracted / "libreoffice-help-de" / HELP / "de"
    en_root = extracted / "libreoffice-help-en-us" / HELP / "en-US"
    if pages is None:
        pages = {"text/shared/01/filter.html": (FILTER_DE, FILTER_EN),
                 "text/swriter/other.html": (OTHER_DE, OTHER_EN)}
    for relative, (de_body, en_body) in pages.items():
        write_page(de_root, relative, "de", de_body)
        write_page(en_root, relative, "en-US", en_body)
    write_page(de_root, "text/shared/only_de.html", "de", '<p id="par_id9">Nur hier.</p>')
    ding_file = extracted / "trans-de-en" / "usr/share/trans/de-en"
    ding_file.parent.mkdir(parents=True)
    ding_file.write_text("\n".join(ding_lines) + "\n", encoding="utf-8")
    return extracted


def read_split(out: Path, split: str):
    de = (out / f"{split}.de").read_text(encoding="utf-8").splitlines()
    en = (out / f"{split}.en").read_text(encoding="utf-8").splitlines()
    assert len(de) == len(en)
    return list(zip(de, en))


def all_pairs(out: Path):
    return [pair for split in offline_de_en.SPLITS for pair in read_split(out, split)]


@pytest.mark.parametrize("raw, clean", [
    ("Das Haus (im Dorf) ist sehr alt.", "Das Haus ist sehr alt."),
    ("The house is very old [Br.].", "The house is very old."),
    ("Aachener {m}; Aachenerin {f} (Bewohner Aachens)", "Aachener"),
    ("He is my neighbour/neighbor.", "He is my neighbour."),
    ("Er gilt als sehr reich.; Er soll sehr reich sein.", "Er gilt als sehr reich."),
    ("'Oh yes, so I did!' / 'Oh yes, you’re right!'", "'Oh yes, so I did!'"),
    ("to deal <dealt> {dealt; dealt} (with sth. (rare)) [coll.]", "to deal"),
])
def test_ding_cleaning_strips_annotations_and_alternatives(raw, clean):
    assert ding.clean_alternative(raw) == clean


def test_ding_phrase_slash_stays_unresolved():
    text = ding.clean_alternative("Das Temperament/die Emotionen sind mit mir durchgegangen.")
    assert ding.has_unresolved_slash(text)
    assert not ding.has_unresolved_slash(ding.clean_alternative("Er kam 2009/10 zurück."))


@pytest.mark.parametrize("text, expected", [
    ("Das Haus ist sehr alt.", True), ("Mind the step!", True), ("Wie geht’s?", False),
    ("Haus", False), ("to do sth.", False), ("Schutz gegen etw.", False), ("Er gilt als reich", False),
])
def test_ding_sentence_detection(text, expected):
    assert ding.is_sentence(text) is expected


def test_ding_pairs_alternative_k_with_k_and_counts_skips(tmp_path):
    path = tmp_path / "de-en"
    path.write_text("\n".join(DING_LINES) + "\n", encoding="utf-8")
    pairs, counts = ding.read_ding(path)
    assert pairs == [("Das Haus ist sehr alt.", "The house is very old."),
                     ("Er ist mein Nachbar.", "He is my neighbour."),
                     ("Er gilt als reich.", "He is reputed to be rich."),
                     ("Ja, das stimmt so.",
                      "Yes, that is quite right and I would say so again and again, forever and ever."),
                     ("Er ist mein Nachbar.", "He is my neighbour.")]
    assert counts == {"ding_lines": 8, "ding_not_sentence": 6, "ding_unresolved_slash": 1,
                      "ding_alternative_count_mismatch": 1}


def test_help_pages_pair_by_page_and_id_with_plain_text(tmp_path):
    extracted = make_extracted(tmp_path)
    pairs, counts = help_pages.read_help(extracted / "libreoffice-help-de" / HELP / "de",
                                         extracted / "libreoffice-help-en-us" / HELP / "en-US")
    assert pairs == [
        ("Standardfilter", "Standard Filter"),
        ("Hier können Sie die Filteroptionen festlegen.", "Allows you to set the filtering options."),
        ("Klicken Sie mit der rechten Maustaste auf Filter.", "Click with the right mouse button on Filter."),
        ("", ""),
        ("LibreOffice Calc", "LibreOffice Calc"),
        ("Standardfilter", "Standard Filter"),
        ("Wählen Sie Format – Zeichen.", "Choose Format - Character."),
        ("OK", "Confirms all of the settings in this dialog and closes it."),
    ]
    assert counts == {"libreoffice_pages_paired": 2, "libreoffice_page_one_language": 1,
                      "libreoffice_ambiguous_id": 1, "libreoffice_id_one_language": 1}


def test_switch_without_default_renders_first_variant(tmp_path):
    page = tmp_path / "p.html"
    page.write_text('<p id="a">In <span class="switch"><span hidden="true" id="WRITERx">Writer</span>'
                    '<span hidden="true" id="CALCx">Calc</span></span> klicken.</p>', encoding="utf-8")
    texts, ambiguous = help_pages.read_page(page)
    assert texts == {"a": "In Writer klicken."} and ambiguous == set()


def test_build_filters_dedupes_and_writes_stats(tmp_path):
    out = tmp_path / "out"
    offline_de_en.build(make_extracted(tmp_path), out, n_valid=1, n_test=1)
    pairs = all_pairs(out)
    assert sorted(pairs) == sorted([
        ("Standardfilter", "Standard Filter"),
        ("Hier können Sie die Filteroptionen festlegen.", "Allows you to set the filtering options."),
        ("Klicken Sie mit der rechten Maustaste auf Filter.", "Click with the right mouse button on Filter."),
        ("Wählen Sie Format – Zeichen.", "Choose Format - Character."),
        ("Das Haus ist sehr alt.", "The house is very old."),
        ("Er ist mein Nachbar.", "He is my neighbour."),
        ("Er gilt als reich.", "He is reputed to be rich."),
    ])
    assert all("\t" not in de + en for de, en in pairs)
    stats = json.loads((out / "corpus_stats.json").read_text(encoding="utf-8"))  # what the build wrote, by hand below
    assert stats["sources"] == {"libreoffice": {"extracted": 8, "kept": 4}, "ding": {"extracted": 5, "kept": 3}}
    assert stats["filters_dropped"] == {
        "empty": {"libreoffice": 1, "ding": 0, "total": 1},
        "identical": {"libreoffice": 1, "ding": 0, "total": 1},
        "length_ratio": {"libreoffice": 1, "ding": 1, "total": 2},
        "duplicate": {"libreoffice": 1, "ding": 1, "total": 2},
    }
    assert {s: v["pairs"] for s, v in stats["splits"].items()} == {"train": 5, "valid": 1, "test": 1}
    assert sum(v["libreoffice"] + v["ding"] for v in stats["splits"].values()) == stats["total_pairs"] == 7
    assert stats["extraction"]["ding_unresolved_slash"] == 1


def test_length_ratio_flag_controls_the_drop(tmp_path):
    stats = offline_de_en.build(make_extracted(tmp_path), tmp_path / "out", n_valid=1, n_test=1,
                                max_len_ratio=100)
    assert stats["filters_dropped"]["length_ratio"]["total"] == 0
    assert stats["total_pairs"] == 9


def split_fixture(tmp_path: Path) -> Path:
    lines = [f"Satz Nummer {i} ist kurz. :: Sentence number {i} is short." for i in range(40)]
    lines += ["Das ist gut so. :: That is good.", "Das ist gut so. :: This is fine as it is.",
              "Das IST gut so. :: That is good indeed."]
    return make_extracted(tmp_path, ding_lines=lines)


def test_splits_are_source_disjoint_sized_and_deterministic(tmp_path):
    extracted = split_fixture(tmp_path)
    first, second, reseeded = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    offline_de_en.build(extracted, first, n_valid=5, n_test=6, seed=1)
    offline_de_en.build(extracted, second, n_valid=5, n_test=6, seed=1)
    offline_de_en.build(extracted, reseeded, n_valid=5, n_test=6, seed=2)
    sources = {split: {de.casefold() for de, _ in read_split(first, split)} for split in offline_de_en.SPLITS}
    assert not sources["train"] & sources["valid"]
    assert not sources["train"] & sources["test"]
    assert not sources["valid"] & sources["test"]
    assert 5 <= len(read_split(first, "valid")) <= 7 and 6 <= len(read_split(first, "test")) <= 8
    assert len(all_pairs(first)) == 4 + 43
    for name in ("train.de", "train.en", "valid.de", "test.en", "corpus_stats.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert read_split(first, "test") != read_split(reseeded, "test")


def test_missing_extracted_dir_exits_non_zero_with_clear_message(tmp_path):
    missing = tmp_path / "nope"
    result = subprocess.run([sys.executable, "-m", "neuroprune.corpus.offline_de_en",
                             "--extracted", str(missing), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode != 0
    assert f"--extracted {missing}: no such directory" in result.stderr
    assert not (tmp_path / "out").exists()


def _exit_message(argv) -> str:
    """The one-line message with which ``offline_de_en.main(argv)`` exits."""
    with pytest.raises(SystemExit) as exit_:
        offline_de_en.main(argv)
    return str(exit_.value)


def test_empty_dir_and_missing_package_are_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "directory is empty" in _exit_message(["--extracted", str(empty), "--out", str(tmp_path / "o")])
    ding_file = empty / "trans-de-en" / "usr/share/trans/de-en"
    ding_file.parent.mkdir(parents=True)
    ding_file.write_text("Haus {n} :: house\n", encoding="utf-8")
    err = _exit_message(["--extracted", str(empty), "--out", str(tmp_path / "o")])
    assert "libreoffice-help-de: expected" in err and "libreoffice-help-en-us: expected" in err
    assert "trans-de-en: expected" not in err


def test_empty_corpus_is_an_error(tmp_path):
    pages = {"text/a.html": ('<p id="x">LibreOffice</p>', '<p id="x">LibreOffice</p>')}
    extracted = make_extracted(tmp_path, ding_lines=["Haus {n} :: house"], pages=pages)
    out = tmp_path / "out"
    assert "no sentence pairs left after filtering" in _exit_message(["--extracted", str(extracted), "--out", str(out)])
    assert not out.exists()


def test_splits_larger_than_corpus_name_the_flags(tmp_path):
    message = _exit_message(["--extracted", str(make_extracted(tmp_path)), "--out", str(tmp_path / "o")])
    assert "--valid 1500 and --test 1500 leave no training data" in message


def test_sources_flag_keeps_only_the_selected_source(tmp_path):
    stats = offline_de_en.build(make_extracted(tmp_path), tmp_path / "out", n_valid=1, n_test=1, sources=["libreoffice"])
    assert stats["sources"]["ding"] == {"extracted": 0, "kept": 0}
    assert stats["sources"]["libreoffice"]["kept"] == 4 and stats["settings"]["sources"] == ["libreoffice"]
    assert ("Er ist mein Nachbar.", "He is my neighbour.") not in all_pairs(tmp_path / "out")


def test_unknown_source_is_named(tmp_path):
    message = _exit_message(["--extracted", str(make_extracted(tmp_path)), "--out", str(tmp_path / "o"), "--sources", "europarl"])
    assert "--sources europarl: expected a comma-separated subset of libreoffice,ding" in message
