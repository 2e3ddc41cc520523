"""IWSLT14 preparation on a tiny fake ``de-en.tgz`` with the real member names and XML layout."""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from neuroprune.corpus import iwslt14

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "iwslt14_de_en" / "prepare-iwslt14.sh"
N_TEXT = 50  # plain text lines per train file, plus one title and one description line


def train_tags(lang: str) -> str:
    header = ['<url>http://www.ted.com/talks/lang/{0}/x.html</url>', '<keywords>talks, x</keywords>',
              '<speaker>Jane Doe</speaker>', '<talkid>1</talkid>', '<title>{0} Title-Line</title>',
              '<description>{0} Description</description>',
              '<reviewer href="http://www.ted.com/profiles/1">R</reviewer>',
              '<translator href="http://www.ted.com/profiles/2">T</translator>']
    text = [f"{lang.upper()} Satz-Nummer {i} Hier." if lang == "de" else f"{lang.upper()} Line-Number {i} Here."
            for i in range(N_TEXT)]
    # Three pairs clean-corpus-n drops: an empty side, too long, bad token ratio.
    text[5] = "" if lang == "de" else "not empty"
    text[6] = " ".join(["wort"] * 176) if lang == "de" else "short"
    text[7] = "eins" if lang == "de" else "one two three four five"
    return "\n".join([line.format(lang) for line in header] + text) + "\n"


def xml_file(name: str, lang: str, n_segments: int) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<mteval>",
             f'<srcset setid="{name}" srclang="{lang}">', '<doc docid="1" genre="lectures">',
             "<url>http://www.ted.com/x</url>", "<description>TED Talk</description>",
             "<keywords>talks</keywords>", "<talkid>1</talkid>", "<title>Jane Doe: X</title>"]
    lines += [f'<seg id="{i + 1}"> {name} {lang.upper()} Seg-Ment {i} It’s </seg>' for i in range(n_segments)]
    lines += ["</doc>", "</srcset>", "</mteval>"]
    return "\n".join(lines) + "\n"


def make_archive(path: Path, skip_member: str = "") -> dict:
    """Write a fake de-en.tgz; test set ``k`` gets ``k + 2`` segments. Returns the test sizes."""
    members = {f"de-en/train.tags.de-en.{lang}": train_tags(lang) for lang in ("de", "en")}
    sizes = {name: k + 2 for k, name in enumerate(iwslt14.TEST_SETS)}
    for name, size in sizes.items():
        for lang in ("de", "en"):
            members[f"de-en/{name}.de-en.{lang}.xml"] = xml_file(name, lang, size)
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            if name == skip_member:
                continue
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return sizes


def run_script(env_overrides):
    env = dict(os.environ, PYTHON=sys.executable,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               **env_overrides)
    env.pop("IWSLT14_URL", None)
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=180)


def lines(path: Path):
    return path.read_text(encoding="utf-8").splitlines()


def test_prepare_script_splits_cleans_and_binarizes(tmp_path):
    archive = tmp_path / "2014-01.tgz"
    sizes = make_archive(archive)
    prep, dest = tmp_path / "prep", tmp_path / "bin"
    result = run_script({"IWSLT14_ARCHIVE": str(archive), "WORK_DIR": str(tmp_path / "work"),
                         "PREP_DIR": str(prep), "DEST_DIR": str(dest), "VOCAB_SIZE": "80"})
    assert result.returncode == 0, result.stderr[-2000:]

    cleaned = N_TEXT + 2 - 3  # text + title + description, minus the three bad pairs
    stats = json.loads((prep / "prepare_stats.json").read_text())
    assert stats["train_metadata_lines"] == 2 * 6
    assert (stats["train_dropped_empty"], stats["train_dropped_too_long"], stats["train_dropped_ratio"]) == (1, 1, 1)
    assert stats["valid"] == cleaned // 23 == 2
    assert stats["train"] == cleaned - cleaned // 23
    assert stats["test"] == sum(sizes.values()) == 20

    valid_de, train_de, test_de = (lines(prep / f"{s}.de") for s in ("valid", "train", "test"))
    valid_en, test_en = lines(prep / "valid.en"), lines(prep / "test.en")
    assert (len(valid_de), len(train_de), len(test_de)) == (2, stats["train"], 20)
    assert len(valid_en) == 2 and len(test_en) == 20
    # Cleaned order: title, description, text 0-4, then text 8-49 at positions 8-49.
    assert valid_de == ["de satz @-@ nummer 23 hier .", "de satz @-@ nummer 46 hier ."]
    assert train_de[:3] == ["de title @-@ line", "de description", "de satz @-@ nummer 0 hier ."]
    assert test_de[0] == "iwslt14.ted.dev2010 de seg @-@ ment 0 it ' s"  # ’ became '
    assert test_en[-1] == "iwslt14.ted.tst2012 en seg @-@ ment 5 it 's"
    everything = "\n".join(valid_de + train_de + test_de + test_en)
    assert "<" not in everything and "jane" not in everything and everything == everything.lower()

    for split in ("train", "valid", "test"):
        assert (dest / f"{split}.de-en.en.bin").stat().st_size > 0
    assert (dest / "dict.de.txt").is_file()


def test_missing_archive_fails_loudly(tmp_path):
    missing = tmp_path / "nowhere" / "de-en.tgz"
    result = run_script({"IWSLT14_ARCHIVE": str(missing), "WORK_DIR": str(tmp_path / "work")})
    assert result.returncode != 0
    assert f"IWSLT14_ARCHIVE={missing}: no such file" in result.stderr
    assert "IWSLT14_URL=" in result.stderr
    assert not (tmp_path / "work").exists()


def test_missing_member_is_named(tmp_path):
    archive = tmp_path / "de-en.tgz"
    make_archive(archive, skip_member="de-en/IWSLT14.TED.tst2011.de-en.en.xml")
    with pytest.raises(ValueError, match=r"member de-en/IWSLT14\.TED\.tst2011\.de-en\.en\.xml not found"):
        iwslt14.prepare(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unaligned_train_files_are_an_error(tmp_path):
    archive = tmp_path / "de-en.tgz"
    make_archive(archive)
    broken = tmp_path / "broken.tgz"
    with tarfile.open(archive) as source, tarfile.open(broken, "w:gz") as target:
        for info in source.getmembers():
            data = source.extractfile(info).read()
            if info.name.endswith("train.tags.de-en.en"):
                data += b"one extra line\n"
                info.size = len(data)
            target.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="expected aligned files"):
        iwslt14.prepare(broken, tmp_path / "out")
