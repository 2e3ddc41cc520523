"""The ``neuroprune`` package never imports fairseq: every module imports, and every tool's ``--help``
runs, with ``import fairseq`` made to fail; imported normally, none of them pulls fairseq in."""
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import neuroprune

REPO = Path(__file__).resolve().parents[1]
TOOLS = ["neuroprune.corpus.spm_tool", "neuroprune.corpus.offline_de_en", "neuroprune.corpus.iwslt14",
         "neuroprune.tools.report", "neuroprune.tools.plots", "neuroprune.tools.summarize",
         "neuroprune.tools.study_table", "neuroprune.tools.significance", "neuroprune.tools.topk_changes",
         "neuroprune.tools.cited_pvalues"]

BLOCK_FAIRSEQ = '''
import importlib.abc, sys
class NoFairseq(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "fairseq" or name.startswith(("fairseq.", "fairseq_cli")):
            raise ImportError(f"neuroprune imported {name}")
sys.meta_path.insert(0, NoFairseq())
'''


def _modules():
    return sorted(m.name for m in pkgutil.walk_packages(neuroprune.__path__, "neuroprune."))


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_every_module_and_tool_help_runs_without_fairseq():
    assert set(TOOLS) <= set(_modules()) and "neuroprune.core.heads" in _modules()
    code = BLOCK_FAIRSEQ + f'''
import importlib, runpy
for name in {_modules()!r}:
    importlib.import_module(name)
for name in {TOOLS!r}:
    sys.argv = [name, "--help"]
    try:
        runpy.run_module(name, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        assert done.code in (0, None), (name, done.code)
    else:
        raise AssertionError(name + " --help did not exit")
print("ok")
'''
    result = _python(code)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("ok"), result.stderr[-3000:]


def test_importing_neuroprune_leaves_fairseq_unimported():
    result = _python(f'import importlib, json, sys\nfor name in {_modules()!r}: importlib.import_module(name)\n'
                     'print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("fairseq", "fairseq_cli"))))')
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == []
