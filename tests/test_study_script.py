"""examples/iwslt14_de_en/study.sh's checks before any run (no training): its settings are refused by name,
and the starting checkpoint's sha256 is kept with the records so that a resumed study cannot mix models."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _study(tmp_path, **variables):
    env = dict(os.environ, STUDY_DIR=str(tmp_path / "study"), RESULTS_DIR=str(tmp_path / "results"),
               DATA_BIN=str(tmp_path / "bin"), PRETRAINED=str(tmp_path / "dense.pt"), PHASES="evaluate summary", PYTHON=sys.executable)
    env.update(variables)
    return subprocess.run(["bash", "examples/iwslt14_de_en/study.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_the_starting_checkpoint_is_recorded_and_another_one_refused(tmp_path):
    (tmp_path / "dense.pt").write_bytes(b"the dense model")
    first = _study(tmp_path)  # nothing trains, so it stops later for want of the dense control's log
    assert "no epoch-1 update count" in first.stderr
    recorded = (tmp_path / "results" / "pretrained.sha256").read_text().strip()
    assert recorded == hashlib.sha256(b"the dense model").hexdigest()
    assert "no epoch-1 update count" in _study(tmp_path).stderr  # the same checkpoint passes the check
    (tmp_path / "other.pt").write_bytes(b"another dense model")
    other = _study(tmp_path, PRETRAINED=str(tmp_path / "other.pt"))
    assert other.returncode != 0 and "is not the checkpoint this study's records started from" in other.stderr


def test_the_summary_alone_needs_no_starting_checkpoint(tmp_path):
    """PHASES=summary redraws the tables from committed records: a missing PRETRAINED is neither refused nor recorded."""
    proc = _study(tmp_path, PHASES="summary", PRETRAINED=str(tmp_path / "absent.pt"))
    assert "PRETRAINED is neither needed nor checked" in proc.stdout
    assert "no epoch-1 update count" in proc.stderr  # it went on to the runs (none are committed here)
    assert not (tmp_path / "results" / "pretrained.sha256").exists()


@pytest.mark.parametrize("variables,message", [
    ({"SELECT_EPOCHS": "2", "EPOCHS": "2"}, "SELECT_EPOCHS=2: expected 1 <= SELECT_EPOCHS < EPOCHS=2"),
    ({"SELECT_BUDGET": "40"}, "SELECT_BUDGET=40 is not one of BUDGETS=81 54 27"),
    ({"STRENGTHS": "my_strength:1e-4:1e-3"}, "STRENGTHS entry 'my_strength:1e-4:1e-3' is not name:alpha:beta"),
    ({"DSP_MODES": "joint frozen"}, "DSP_MODES entry 'frozen' is not joint or pipelined"),
    ({"PRETRAINED": "/nonexistent/dense.pt"}, "PRETRAINED=/nonexistent/dense.pt does not exist"),
])
def test_bad_settings_are_refused_by_name(tmp_path, variables, message):
    (tmp_path / "dense.pt").write_bytes(b"x")
    proc = _study(tmp_path, **variables)
    assert proc.returncode != 0 and message in proc.stderr
