"""Every script's ``-h`` prints its whole header: the comment lines between the shebang and ``set -euo pipefail``,
its usage line included (a fixed line range drifted as headers grew and dropped the usage line)."""
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["examples/iwslt14_de_en/finetune.sh", "examples/iwslt14_de_en/frontier.sh", "examples/iwslt14_de_en/full_size.sh",
           "examples/iwslt14_de_en/post_prune.sh", "examples/iwslt14_de_en/study.sh", "examples/iwslt14_de_en/train_dense.sh",
           "scripts/launch_ranks.sh", "scripts/run_offline_demo.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_the_header_up_to_set(script):
    lines = (REPO / script).read_text().splitlines()
    header = lines[1:lines.index("set -euo pipefail")]
    assert header and all(line.startswith("#") for line in header)
    assert any(line.startswith("# Usage") for line in header)
    out = subprocess.run(["bash", script, "-h"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.splitlines() == header
