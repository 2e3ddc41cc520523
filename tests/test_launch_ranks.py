"""scripts/launch_ranks.sh with a stub FAIRSEQ_TRAIN that records its arguments (no training): the flags each
rank gets, a user's --ddp-backend, and that the other ranks are stopped when one fails or the launcher is
interrupted (a rank left alone would wait for the dead one forever)."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .stubs import make_stub, stub_calls

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "launch_ranks.sh"
RANK = """
rank = args[args.index("--distributed-rank") + 1]
print(f"stub rank {rank} started", flush=True)
if rank == os.environ.get("STUB_FAIL_RANK"):
    time.sleep(0.5)
    print("stub: this rank breaks")
    sys.exit(3)
time.sleep(float(os.environ.get("STUB_SLEEP", "0")))
"""


def _env(tmp_path, **extra):
    stub = make_stub(tmp_path / "fairseq-train", then=RANK)
    return dict(os.environ, FAIRSEQ_TRAIN=str(stub), LOG_DIR=str(tmp_path / "logs"), MASTER_PORT="29999", **extra)


def _launch(tmp_path, *args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args], env=_env(tmp_path, **env), capture_output=True, text=True, timeout=60)


def _ranks(tmp_path):
    """{rank: recorded call} of the stub."""
    calls = stub_calls(tmp_path / "fairseq-train")
    return {int(c["args"][c["args"].index("--distributed-rank") + 1]): c for c in calls}


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_each_rank_gets_the_user_arguments_then_its_distributed_flags(tmp_path):
    proc = _launch(tmp_path, "data-bin", "--cpu", "--max-epoch", "1", NPROC="3", BACKEND="gloo", MASTER_ADDR="127.0.0.9")
    assert proc.returncode == 0, proc.stderr
    ranks = _ranks(tmp_path)
    assert sorted(ranks) == [0, 1, 2]
    for rank, call in ranks.items():
        assert call["args"] == [
            "data-bin", "--cpu", "--max-epoch", "1", "--distributed-world-size", "3", "--distributed-rank", str(rank),
            "--distributed-backend", "gloo", "--distributed-init-method", "tcp://127.0.0.9:29999",
            "--distributed-no-spawn", "--ddp-backend", "legacy_ddp"]
        assert (tmp_path / "logs" / f"rank{rank}.log").read_text() == f"stub rank {rank} started\n"


@pytest.mark.parametrize("user", [["--ddp-backend", "no_c10d"], ["--ddp-backend=c10d"]])
def test_a_users_ddp_backend_is_the_only_one(tmp_path, user):
    """fairseq takes the last of repeated flags, so appending ours would silently override the user's."""
    proc = _launch(tmp_path, "data-bin", *user, "--cpu", NPROC="2")
    assert proc.returncode == 0, proc.stderr
    assert len(_ranks(tmp_path)) == 2
    for call in _ranks(tmp_path).values():
        args = call["args"]
        assert [a for a in args if a.startswith("--ddp-backend")] == user[:1] and args[1:1 + len(user)] == user


def test_a_failing_rank_stops_the_others_and_is_named(tmp_path):
    start = time.monotonic()
    proc = _launch(tmp_path, "data-bin", NPROC="3", STUB_FAIL_RANK="1", STUB_SLEEP="120")
    assert time.monotonic() - start < 30  # not the 120 s the healthy ranks would sleep
    assert proc.returncode == 1
    assert "rank 1 failed (exit status 3)" in proc.stderr and "stub: this rank breaks" in proc.stderr
    assert "rank 0 failed" not in proc.stderr and "rank 2 failed" not in proc.stderr
    assert len(_ranks(tmp_path)) == 3 and not any(_alive(c["pid"]) for c in _ranks(tmp_path).values())


def test_missing_fairseq_train_is_reported(tmp_path):
    env = _env(tmp_path)
    env["FAIRSEQ_TRAIN"] = str(tmp_path / "no-such-fairseq-train")
    proc = subprocess.run(["bash", str(SCRIPT), "data-bin"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "failed (exit status 127)" in proc.stderr and "no-such-fairseq-train" in proc.stderr


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_launcher_stops_its_ranks(tmp_path, sig, status):
    # A shell cannot trap a signal that was ignored when it started (as SIGINT is under a non-interactive parent
    # shell's background job, e.g. some CI runners): start the launcher with the default handler, as a user's shell does.
    launcher = subprocess.Popen(["bash", str(SCRIPT), "data-bin"], env=_env(tmp_path, NPROC="2", STUB_SLEEP="120"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while len(_ranks(tmp_path)) < 2:
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.05)
    pids = [c["pid"] for c in _ranks(tmp_path).values()]
    launcher.send_signal(sig)
    _, err = launcher.communicate(timeout=30)
    assert launcher.returncode == status and "stopping the ranks" in err
    assert not any(_alive(pid) for pid in pids)
