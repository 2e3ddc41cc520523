"""Stand-ins for command-line tools (FAIRSEQ_TRAIN, PYTHON) in tests of how a script calls them."""
import json
import sys
from pathlib import Path
from typing import List, Sequence

STUB = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
with open({calls!r}, "a") as f:
    f.write(json.dumps({{"args": args, "pid": os.getpid(), "time": time.time(),
                        "env": {{k: os.environ.get(k) for k in {env!r}}}}}) + "\\n")
{then}
"""


def make_stub(path: Path, then: str = "", env: Sequence[str] = ()) -> Path:
    """An executable at ``path`` that appends ``{"args": [...], "pid": ..., "time": start time, "env": {NAME: value
    or None for each name in env}}`` as one JSON line to ``path.calls`` and then runs ``then`` (Python source;
    ``args``, ``os``, ``sys``, ``time`` are defined)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STUB.format(python=sys.executable, calls=str(calls_file(path)), then=then, env=tuple(env)))
    path.chmod(0o755)
    return path


def calls_file(stub: Path) -> Path:
    return stub.with_name(stub.name + ".calls")


def stub_calls(stub: Path) -> List[dict]:
    """The calls recorded so far, in order (none when the stub never ran)."""
    calls = calls_file(stub)
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
