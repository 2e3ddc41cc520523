"""Sentencepiece tool and scripts/binarize.sh on a tiny corpus made in tmp_path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from neuroprune.corpus import spm_tool

REPO = Path(__file__).resolve().parents[1]
WORDS_DE = "der die das haus katze hund baum garten fenster tür tisch stuhl buch".split()
WORDS_EN = "the a this house cat dog tree garden window door table chair book".split()


def tiny_corpus(folder: Path, n_train: int = 80) -> Path:
    """Line-aligned {train,valid,test}.{de,en} made of a small vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": n_train, "valid": 6, "test": 7}
    for split, size in sizes.items():
        offset = {"train": 0, "valid": 1000, "test": 2000}[split]
        for lang, words in (("de", WORDS_DE), ("en", WORDS_EN)):
            lines = [" ".join(words[(i * k + offset) % len(words)] for k in range(1, 2 + i % 6)) + f" {i}"
                     for i in range(size)]
            (folder / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_train_and_encode_round_trip(tmp_path):
    data = tiny_corpus(tmp_path / "data")
    model = spm_tool.train([data / "train.de", data / "train.en"], tmp_path / "spm" / "spm", 60)
    assert model == tmp_path / "spm" / "spm.model" and model.is_file()
    counts = spm_tool.encode(model, data / "valid.de", data / "valid.en", tmp_path / "enc" / "valid", "de", "en")
    assert counts["pairs_out"] == counts["pairs_in"] == 6
    processor = spm.SentencePieceProcessor(model_file=str(model))
    encoded = (tmp_path / "enc" / "valid.de").read_text(encoding="utf-8").splitlines()
    original = (data / "valid.de").read_text(encoding="utf-8").splitlines()
    assert [processor.decode(line.split()) for line in encoded] == original
    assert any(len(line.split()) > len(raw.split()) for line, raw in zip(encoded, original))


def test_max_pieces_drops_long_train_pairs_and_reports(tmp_path):
    data = tiny_corpus(tmp_path / "data")
    long_line = " ".join(WORDS_DE * 4)
    with open(data / "train.de", "a", encoding="utf-8") as handle:
        handle.write(long_line + "\n")
    with open(data / "train.en", "a", encoding="utf-8") as handle:
        handle.write("short\n")
    model = spm_tool.train([data / "train.de", data / "train.en"], tmp_path / "spm", 60)
    report = tmp_path / "report.json"
    spm_tool.encode(model, data / "train.de", data / "train.en", tmp_path / "train", "de", "en", max_pieces=40, report=report)
    processor = spm.SentencePieceProcessor(model_file=str(model))
    pairs = zip(*((data / f"train.{lang}").read_text(encoding="utf-8").splitlines() for lang in ("de", "en")))
    too_long = [de for de, en in pairs if max(len(processor.encode(de)), len(processor.encode(en))) > 40]
    assert too_long == [long_line]  # counted here with sentencepiece itself
    assert {k: v for k, v in json.loads(report.read_text()).items() if k not in ("src", "tgt")} == {
        "max_pieces": 40, "pairs_in": 81, "pairs_out": 80, "dropped_over_max_pieces": 1}
    kept = (tmp_path / "train.de").read_text(encoding="utf-8").splitlines()
    assert len(kept) == 80 and all(len(line.split()) <= 40 for line in kept)


def test_mismatched_line_counts_are_an_error(tmp_path):
    data = tiny_corpus(tmp_path / "data")
    model = spm_tool.train([data / "train.de", data / "train.en"], tmp_path / "spm", 60)
    (tmp_path / "short.en").write_text("one line\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"has 6 lines but --tgt .*short\.en has 1"):
        spm_tool.encode(model, data / "valid.de", tmp_path / "short.en", tmp_path / "x", "de", "en")
    with pytest.raises(SystemExit, match="must be line-aligned"):
        spm_tool.main(["encode", "--model", str(model), "--src", str(data / "valid.de"),
                       "--tgt", str(tmp_path / "short.en"), "--out-prefix", str(tmp_path / "x")])
    assert not (tmp_path / "x.de").exists()


def test_missing_model_is_an_error(tmp_path):
    data = tiny_corpus(tmp_path / "data")
    missing = tmp_path / "none.model"
    with pytest.raises(SystemExit) as exit_:
        spm_tool.main(["encode", "--model", str(missing), "--src", str(data / "valid.de"),
                       "--tgt", str(data / "valid.en"), "--out-prefix", str(tmp_path / "x")])
    assert f"--model {missing}: no such sentencepiece model" in str(exit_.value)


def run_binarize(env_overrides):
    env = dict(os.environ, PYTHON=sys.executable,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               **env_overrides)
    return subprocess.run(["bash", str(REPO / "scripts" / "binarize.sh")], env=env,
                          capture_output=True, text=True, timeout=600)  # a hang guard (185 s seen under load)


@pytest.mark.slow
def test_binarize_script_end_to_end(tmp_path):
    """sentencepiece + fairseq-preprocess twice (fairseq's import and worker start-up dominate: slow)."""
    data = tiny_corpus(tmp_path / "data")
    dest = tmp_path / "data-bin"
    result = run_binarize({"DATA_DIR": str(data), "DEST_DIR": str(dest), "VOCAB_SIZE": "60",
                           "MAX_PIECES": "12"})
    assert result.returncode == 0, result.stderr[-2000:]
    for split in ("train", "valid", "test"):
        for lang in ("de", "en"):
            for ext in ("bin", "idx"):
                assert (dest / f"{split}.de-en.{lang}.{ext}").stat().st_size > 0
    assert (dest / "dict.de.txt").read_text() == (dest / "dict.en.txt").read_text()
    processor = spm.SentencePieceProcessor(model_file=str(data / "spm" / "spm.model"))
    pairs = list(zip(*((data / f"train.{lang}").read_text().splitlines() for lang in ("de", "en"))))
    short = [(de, en) for de, en in pairs if max(len(processor.encode(de)), len(processor.encode(en))) <= 12]
    assert 0 < len(short) < 80  # counted here with sentencepiece itself
    report = json.loads((data / "spm" / "train_length_filter.json").read_text())
    assert (report["max_pieces"], report["pairs_in"], report["pairs_out"], report["dropped_over_max_pieces"]) == (12, 80, len(short), 80 - len(short))
    train_lines = (data / "spm" / "train.de").read_text().splitlines()
    assert [processor.decode(line.split()) for line in train_lines] == [de for de, _ in short]
    assert len((data / "spm" / "test.de").read_text().splitlines()) == 7

    rerun = run_binarize({"DATA_DIR": str(data), "DEST_DIR": str(dest), "VOCAB_SIZE": "60"})
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads((data / "spm" / "train_length_filter.json").read_text())["pairs_out"] == 80


def test_binarize_script_names_a_missing_split(tmp_path):
    data = tiny_corpus(tmp_path / "data")
    (data / "valid.en").unlink()
    result = run_binarize({"DATA_DIR": str(data), "DEST_DIR": str(tmp_path / "bin")})
    assert result.returncode != 0
    assert f"DATA_DIR={data}: missing or empty valid.en" in result.stderr
