"""tools.torchrun_train's flags from torchrun's variables (no training; tests/test_distributed.py runs it under torchrun)."""
import pytest

from neuroprune_fairseq.tools.torchrun_train import distributed_flags

TORCHRUN = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "node0", "MASTER_PORT": "29400"}


def _options(flags):
    """``{flag: value}`` of a flat flag list (True for a flag without a value)."""
    options, i = {}, 0
    while i < len(flags):
        has_value = i + 1 < len(flags) and not flags[i + 1].startswith("--")
        options[flags[i]] = flags[i + 1] if has_value else True
        i += 2 if has_value else 1
    return options


def test_rank_world_size_and_local_rank_become_fairseqs_flags():
    """Rank 5 of 8, second process on its machine: fairseq gets those numbers and joins torchrun's store (env://)."""
    assert _options(distributed_flags(["data-bin", "--cpu"], TORCHRUN)) == {
        "--distributed-world-size": "8", "--distributed-rank": "5", "--device-id": "1",
        "--distributed-init-method": "env://", "--distributed-no-spawn": True,
        "--distributed-backend": "gloo", "--ddp-backend": "legacy_ddp"}


@pytest.mark.parametrize("args,backends", [
    (["data-bin"], {"--distributed-backend": "nccl", "--ddp-backend": "legacy_ddp"}),  # GPUs: fairseq's default
    (["data-bin", "--cpu", "--distributed-backend", "mpi", "--ddp-backend=pytorch_ddp"], {}),  # the user's stay alone
])
def test_backends_are_added_only_when_the_arguments_name_none(args, backends):
    options = _options(distributed_flags(args, TORCHRUN))
    assert {k: options[k] for k in ("--distributed-backend", "--ddp-backend") if k in options} == backends


def test_outside_torchrun_the_missing_variables_are_named():
    with pytest.raises(SystemExit, match=r"WORLD_SIZE, LOCAL_RANK not set to an integer: start this module with torchrun"):
        distributed_flags(["data-bin"], {"RANK": "0", "LOCAL_RANK": "x"})


@pytest.mark.parametrize("flag", ["--distributed-rank", "--distributed-world-size=4", "--distributed-init-method"])
def test_a_flag_torchrun_decides_is_refused_by_name(flag):
    """fairseq keeps the last of a repeated flag, so a user's rank or world size would be silently replaced."""
    with pytest.raises(SystemExit, match=f"{flag.split('=')[0]} come from torchrun here"):
        distributed_flags(["data-bin", flag, "1"], TORCHRUN)
