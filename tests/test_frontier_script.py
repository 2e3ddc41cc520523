"""examples/iwslt14_de_en/frontier.sh's checks before any run (no training): the run count of its estimate, worked
out by hand, and its settings refused by name."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _frontier(tmp_path, **variables):
    (tmp_path / "dense.pt").write_bytes(b"the dense model")
    env = dict(os.environ, STUDY_DIR=str(tmp_path / "runs"), RESULTS_DIR=str(tmp_path / "results"), DATA_BIN=str(tmp_path / "bin"),
               PRETRAINED=str(tmp_path / "dense.pt"), PHASES="summary", PYTHON=sys.executable)
    env.update(variables)
    return subprocess.run(["bash", "examples/iwslt14_de_en/frontier.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("variables,runs", [
    ({}, 1 + 2 * (2 + 3 * 7 + 2 * 4) + 2 + 3),  # control; per budget michel, dsp, 3 sweeps of 7, 2 GMP bases x 4; split, thetas
    ({"SEEDS": "1 2", "BUDGETS": "54", "STRENGTHS": "a:1:2 b:3:4", "GMP_TARGETS": "0.5", "SPLIT_STRENGTH": ""}, 2 * (1 + 2 + 6 + 2)),
    ({"PHASES": "posttrain", "POST_BASES": "michel dense", "POST_METHODS": "a b c", "POST_SPARSITIES": "0.5 0.6 0.7",
      "POST_FT_BASES": "michel", "POST_FT_METHODS": "a"}, 68 + 3 * (2 * 3 + 1 * 1)),
    ({"SWEEPS": "gmp_michel l1", "BUDGETS": "54", "SPLIT_STRENGTH": ""}, 1 + 2 + 4 + 7),  # control, references, 4 targets, 7 strengths
    ({"SWEEPS": "gmp_dsp", "BUDGETS": "54", "SPLIT_STRENGTH": ""}, 1 + 2 + 4),  # no penalty sweep at all
    ({"SWEEPS": "np l1", "BUDGETS": "54", "SPLIT_STRENGTH": ""}, 1 + 2 + 7 + 7),  # no GMP at all
    ({"SWEEPS": "", "BUDGETS": "54 81", "SPLIT_STRENGTH": ""}, 1 + 2 * 2),  # empty SWEEPS: only the references, not the default sweeps
    ({"SEEDS": "1 2 3", "BUDGETS": "54", "STRENGTHS": "a:1:2", "SWEEPS": "np_plus gmp_michel", "GMP_TARGETS": "0.1",
      "REFERENCES": "", "SPLIT_STRENGTH": ""}, 1 + 3 * 2),  # matched seeds: the first control (update count), 2 runs per seed
    ({"SEEDS": "1 2", "BUDGETS": "54", "SWEEPS": "gmp_dsp", "GMP_TARGETS": "0.5", "REFERENCES": "dense michel", "SPLIT_STRENGTH": ""},
     2 * (1 + 1 + 1)),  # per seed its control, michel and one GMP run; no DSP reference
])
def test_the_estimate_counts_every_run(tmp_path, variables, runs):
    proc = _frontier(tmp_path, **variables)
    assert f"frontier.sh: {runs} runs, 0 with records already" in proc.stdout
    assert "no epoch-1 update count" in proc.stderr  # nothing trained (PHASES=summary), so it stops there


@pytest.mark.parametrize("variables,message", [
    ({"SELECT_EPOCHS": "2"}, "SELECT_EPOCHS=2: expected 1 <= SELECT_EPOCHS < EPOCHS=2"),
    ({"STRENGTHS": "my_strength:1e-4:1e-3"}, "STRENGTHS entry 'my_strength:1e-4:1e-3' is not name:alpha:beta"),
    ({"SWEEPS": "np_plus gmp"}, "SWEEPS entry 'gmp' is not one of np_plus gmp_michel l1 np gmp_dsp"),
    ({"GMP_TARGETS": "50"}, "GMP_TARGETS entry '50' is not a share in [0, 1)"),
    ({"MATCHED": "np_plus_a2e-4"}, "MATCHED entry 'np_plus_a2e-4' is not A:B"),
    ({"REFERENCES": "michel dsp"}, "REFERENCES entry 'dsp' is not one of michel dsp_joint dense"),
    ({"PRETRAINED": "/nonexistent/dense.pt"}, "PRETRAINED=/nonexistent/dense.pt does not exist"),
])
def test_bad_settings_are_refused_by_name(tmp_path, variables, message):
    proc = _frontier(tmp_path, **variables)
    assert proc.returncode != 0 and message in proc.stderr


def test_the_estimate_counts_as_done_only_the_records_of_the_planned_runs(tmp_path):
    """A record of a planned run counts; one of a run these settings do not plan (another sweep) does not."""
    records = tmp_path / "results" / "records"
    records.mkdir(parents=True)
    for name in ("michel_k54_s1", "l1_a_k54_s1", "unrelated_run"):
        (records / f"{name}.json").write_text("{}")
    proc = _frontier(tmp_path, SWEEPS="gmp_michel", BUDGETS="54", SPLIT_STRENGTH="", GMP_TARGETS="0.5", STRENGTHS="a:1:2")
    assert "frontier.sh: 4 runs, 1 with records already; 3 to train and evaluate" in proc.stdout  # dense, michel, dsp, gmp


@pytest.mark.parametrize("phases,warned", [("posttrain", True), ("evaluate posttrain", False), ("summary", False)])
def test_posttrain_without_evaluate_is_warned(tmp_path, phases, warned):
    """The post-training phase prunes; only the evaluate phase writes records (a session ran posttrain alone and got none)."""
    proc = _frontier(tmp_path, PHASES=phases)
    assert ("has posttrain without evaluate" in proc.stderr) == warned
