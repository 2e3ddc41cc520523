"""Stand-ins for command-line tools (FAIRSEQ_TRAIN, PYTHON) in tests of how a script calls them."""
import json
import sys
from pathlib import Path
from typing import List

STUB = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
with open({calls!r}, "a") as f:
    f.write(json.dumps({{"args": args, "pid": os.getpid()}}) + "\\n")
{then}
"""


def make_stub(path: Path, then: str = "") -> Path:
    """An executable at ``path`` that appends ``{"args": [...], "pid": ...}`` as one JSON line to
    ``path.calls`` and then runs ``then`` (Python source; ``args``, ``os``, ``sys``, ``time`` are defined)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STUB.format(python=sys.executable, calls=str(calls_file(path)), then=then))
    path.chmod(0o755)
    return path


def calls_file(stub: Path) -> Path:
    return stub.with_name(stub.name + ".calls")


def stub_calls(stub: Path) -> List[dict]:
    """The calls recorded so far, in order (none when the stub never ran)."""
    calls = calls_file(stub)
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
