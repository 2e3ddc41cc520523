"""The study's results table joins records, benchmark reports and training logs by run name."""
import json

import pytest

from neuroprune.tools import study_table


def _record(name, method, bleu, heads, budget=None):
    return {"name": name, "method": method, "budget": budget, "bleu": bleu, "tokenized_bleu": bleu + 0.5,
            "heads_kept": heads, "heads_total": 108, "weight_sparsity": 0.25, "bleu_signature": "nrefs:1|tok:13a"}


def test_table_joins_records_benchmarks_and_logs(tmp_path):
    (tmp_path / "bench").mkdir(), (tmp_path / "logs").mkdir()
    paths = []
    for rec in (_record("dense", "dense", 19.3, 108), _record("dsp_k54", "dsp", 15.1, 54, budget=54)):
        paths.append(tmp_path / f"{rec['name']}.json")
        paths[-1].write_text(json.dumps(rec))
    (tmp_path / "bench" / "dsp_k54.json").write_text(json.dumps({"models": {"exported": {"params": 4019904, "speedup_generate": 1.49}}}))
    (tmp_path / "logs" / "dsp_k54.txt").write_text("x | train | epoch 001 | loss 4.6 | wps 1352.2 | ups 0.8\nx | train | epoch 002 | loss 4.1 | wps 1401.7 | ups 0.9\n")
    study_table.main([str(p) for p in paths] + ["--bench-dir", str(tmp_path / "bench"), "--logs-dir", str(tmp_path / "logs"),
                      "--out-tsv", str(tmp_path / "t.tsv"), "--out-md", str(tmp_path / "t.md")])
    rows = [line.split("\t") for line in (tmp_path / "t.tsv").read_text().splitlines()]
    assert rows[0][0] == "run" and len(rows) == 3
    assert rows[1] == ["dense", "dense", "-", "108/108", "0.2500", "19.30", "19.80", "-", "-", "-"]
    assert rows[2] == ["dsp_k54", "dsp", "54", "54/108", "0.2500", "15.10", "15.60", "4,019,904", "1.49x", "1402"]
    assert "`nrefs:1|tok:13a`" in (tmp_path / "t.md").read_text()


def test_a_malformed_benchmark_report_is_named(tmp_path):
    record = tmp_path / "r.json"
    record.write_text(json.dumps(_record("run", "l1", 10.0, 108)))
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(SystemExit, match="run.json: not a benchmark report"):
        study_table.main([str(record), "--bench-dir", str(tmp_path), "--logs-dir", str(tmp_path),
                          "--out-tsv", str(tmp_path / "t.tsv"), "--out-md", str(tmp_path / "t.md")])
