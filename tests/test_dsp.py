"""DSP (``--task dsp_translation``): the float64 Gumbel soft top-K and its limit, the gates on real fairseq
attention, the fixed mask after the anneal, checkpoints, and real fairseq-train runs (joint, pipelined,
SIGKILL and resume)."""
import copy
import os
import re
import signal
import subprocess

import pytest
import torch

from neuroprune.checkpoint_stats import masks_from_state_dict
from neuroprune.core.dsp import (annealed_temperature, gumbel_noise, relaxed_top_k, soft_top_k,
                                 straight_through, xavier_logits)
from neuroprune.core.selection import keep_top_k
from neuroprune.state_keys import DSP_LOGITS_KEY, MASK_BUFFER, PRUNED_EPOCH_BUFFER
from neuroprune_fairseq import head_masks
from neuroprune_fairseq.dsp_gates import ADAM_KEYS

from .fairseq_run import BIN, build_in_process, config_in_process, preprocess, random_sample, run, train_args, write_toy_corpus

SIZES = [6] * 18  # the tiny test model: 18 attention modules of 6 heads


def _dsp(tmp_path, *flags):
    return build_in_process(tmp_path, "--task", "dsp_translation", *flags)


def _set_logits(dsp, seed=0):
    with torch.no_grad():
        dsp.logits.copy_(torch.randn(108, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


# ---- the relaxation (core.dsp) ----

@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("tau", [5.0, 0.5, 0.05])
def test_soft_top_k_sums_to_k(k, tau):
    scores = torch.randn(4, 10, generator=torch.Generator().manual_seed(k))
    mask = soft_top_k(scores, k, tau)
    assert mask.dtype == torch.float64
    assert torch.allclose(mask.sum(-1), torch.full((4,), float(k), dtype=torch.float64), atol=1e-9)
    assert bool((mask >= 0).all())  # (a single entry may exceed 1: the relaxation bounds sums, not entries)


def test_soft_top_k_concentrates_on_the_hard_top_k_as_the_temperature_falls():
    scores = torch.tensor([0.3, 2.0, -1.0, 1.2, 0.9, -0.4])
    hard = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)  # the three largest, by hand
    gaps = [float((soft_top_k(scores, 3, tau) - hard).abs().max()) for tau in (3.0, 1.0, 0.3, 0.03)]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > 0.3 and gaps[-1] < 1e-3


def test_relaxation_keeps_at_least_one_head_in_every_module():
    """Module 1's heads all score far below the rest: the relaxation with the floor still gives it a
    whole head, the plain soft top-K over all heads (no floor) gives it almost nothing."""
    scores = torch.tensor([3.0, 2.5, 2.0, -9.0, -9.5, -8.0, 1.0, 1.5, 0.5], dtype=torch.float64)
    gates = relaxed_top_k(scores, [3, 3, 3], 4, tau=0.5)
    sums = [float(gates[i:i + 3].sum()) for i in (0, 3, 6)]
    assert min(sums) >= 1 - 1e-12 and sum(sums) == pytest.approx(4.0, abs=1e-12)
    assert float(soft_top_k(scores, 4, 0.5)[3:6].sum()) < 1e-6


@pytest.mark.parametrize("k,per_module", [(18, False), (27, False), (54, False), (81, False), (54, True)])
def test_gates_are_exactly_0_1_at_the_final_temperature_and_equal_the_hard_rule(k, per_module):
    """At tau = 1e-8 in float64 every round is one-hot: the gates are exactly 0/1, they are the hard
    selection of the evaluation mask (keep_top_k, one head per module first) of the same perturbed
    scores, and the gradient to the logits is exactly zero (the mask cannot move any more)."""
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        logits = xavier_logits(SIZES, generator).requires_grad_(True)
        scores = logits + gumbel_noise(108, generator)
        gates = relaxed_top_k(scores, SIZES, k, 1e-8, per_module)
        assert bool(((gates == 0) | (gates == 1)).all()) and float(gates.sum()) == k
        assert torch.equal(gates.detach(), keep_top_k(scores.detach(), SIZES, k, per_module).double())
        (gates * torch.randn(108, generator=generator, dtype=torch.float64)).sum().backward()
        assert torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("per_module", [False, True])
def test_relaxation_gradient_passes_gradcheck(per_module):
    """Analytic against finite-difference Jacobian of the float64 relaxation (fixed noise)."""
    generator = torch.Generator().manual_seed(7)
    noise = gumbel_noise(9, generator)
    logits = torch.randn(9, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: relaxed_top_k(w + noise, [3, 3, 3], 6, 0.7, per_module), (logits,))


def test_straight_through_is_the_hard_mask_forward_and_the_identity_backward():
    logits = torch.tensor([0.1, 1.0, -0.5, 0.7, 0.3, -0.2], dtype=torch.float64, requires_grad=True)
    hard = keep_top_k(logits.detach(), [3, 3], 3).double()
    gates = straight_through(logits, hard)
    assert gates.tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]  # head 1 and 3 by score, head 4 as module 1's best
    upstream = torch.tensor([1.0, -2.0, 3.0, 0.5, 4.0, -1.5], dtype=torch.float64)
    (gates * upstream).sum().backward()
    assert torch.equal(logits.grad, upstream)


def test_temperature_anneals_exponentially_from_0_1_to_1e_8():
    assert annealed_temperature(0, 0.1, 1e-8, 100) == 0.1
    assert annealed_temperature(50, 0.1, 1e-8, 100) == pytest.approx(10 ** -4.5)  # geometric mean of the two ends
    assert annealed_temperature(100, 0.1, 1e-8, 100) == annealed_temperature(500, 0.1, 1e-8, 100) == 1e-8


def test_hard_selection_keeps_exactly_k_with_one_head_per_module():
    scores = torch.tensor([9.0, 8.0, 7.0, 0.1, 0.3, 0.2, 5.0, 4.0, 3.0])  # module 1's heads all score low
    mask = keep_top_k(scores, [3, 3, 3], 4)
    assert mask.tolist() == [1, 1, 0, 0, 1, 0, 1, 0, 0]  # module 1 keeps its best head (index 4), then the best overall
    per_module = keep_top_k(scores, [3, 3, 3], 6, per_module=True)
    assert [int(per_module[i:i + 3].sum()) for i in (0, 3, 6)] == [2, 2, 2]
    with pytest.raises(ValueError, match="at least one per module"):
        keep_top_k(scores, [3, 3, 3], 2)
    with pytest.raises(ValueError, match="multiple of the 3 modules"):
        keep_top_k(scores, [3, 3, 3], 4, per_module=True)


# ---- gates on a real fairseq model, in process ----

def test_initial_logits_are_a_seeded_xavier_draw(tmp_path):
    """U(-0.5, 0.5) for 18 modules x 6 heads (sqrt(6 / 24)); the same draw for the same seed, another
    for another seed, and zeros with --np-dsp-init zeros."""
    first = _dsp(tmp_path, "--np-dsp-heads", "54")[0].dsp.logits.detach()
    again = _dsp(tmp_path, "--np-dsp-heads", "54")[0].dsp.logits.detach()
    other = _dsp(tmp_path, "--np-dsp-heads", "54", "--np-dsp-seed", "2")[0].dsp.logits.detach()
    zeros = _dsp(tmp_path, "--np-dsp-heads", "54", "--np-dsp-init", "zeros")[0].dsp.logits.detach()
    assert first.dtype == torch.float64 and float(first.abs().max()) < 0.5
    assert float(first.max()) > 0.4 and float(first.min()) < -0.4
    assert torch.equal(first, again) and not torch.equal(first, other) and torch.count_nonzero(zeros) == 0


def test_logit_gradient_is_the_gate_gradient_through_the_relaxation(tmp_path):
    """The real loss's gradient reaches the logits exactly as the chain rule says: dL/dgates (taken with
    the gates as a leaf of the same forward) pushed back through the relaxation (checked on its own by
    gradcheck above) equals the logits' gradient of the ordinary backward pass."""
    task, model, criterion = _dsp(tmp_path, "--np-dsp-heads", "54", "--np-dsp-temp-init", "1")
    model.train()
    sample = random_sample(task)
    dsp = task.dsp
    dsp.begin_update(0)
    criterion(model, sample)[0].backward()
    through_model = dsp.logits.grad.clone()
    gates = dsp.begin_update(0)  # the same noise, so the same gates, with a fresh graph to the logits
    dsp.gates = leaf = gates.detach().requires_grad_(True)  # the forward below uses this leaf
    criterion(model, sample)[0].backward()
    (chained,) = torch.autograd.grad(gates, dsp.logits, leaf.grad)
    assert int(torch.count_nonzero(through_model)) > 50
    assert torch.allclose(through_model, chained, rtol=1e-6, atol=1e-12)


def test_dsp_with_all_heads_leaves_the_model_output_unchanged(tmp_path):
    task, model, _ = build_in_process(tmp_path)
    dsp_task, gated, _ = _dsp(tmp_path, "--np-dsp-heads", "108")
    gated.load_state_dict(model.state_dict())
    assert bool((dsp_task.dsp.begin_update(3) == 1).all())
    sample = random_sample(task)
    model.train(), gated.train()  # the tiny model has no dropout: training mode is deterministic
    assert torch.allclose(gated(**sample["net_input"])[0], model(**sample["net_input"])[0], atol=1e-5)


def test_evaluation_and_the_fixed_mask_train_forward_equal_the_saved_mask_under_another_task(tmp_path):
    """Before the freeze, evaluation gates with the hard top-K; after it, training runs on the mask
    buffers and zeroed heads. Both equal the checkpoint loaded under neuroprune_translation (mask applied
    by zeroing weights, no gates), and differ from the unpruned model."""
    task, model, _ = _dsp(tmp_path, "--np-dsp-heads", "27")
    _set_logits(task.dsp)
    saved = copy.deepcopy(model.state_dict())
    _, dense, _ = build_in_process(tmp_path)  # the same initial weights (same torch seed), all heads
    _, plain, _ = build_in_process(tmp_path)
    plain.load_state_dict(copy.deepcopy(saved))
    net_input = random_sample(task)["net_input"]
    outputs = lambda m: m(**net_input)[0]  # noqa: E731
    model.eval(), plain.eval(), dense.eval()
    assert torch.allclose(outputs(model), outputs(plain), atol=1e-6)
    task.dsp.freeze()
    task.dsp.gates = torch.zeros(108, dtype=torch.float64)  # would silence every head if the hooks still ran
    model.train(), plain.train(), dense.train()
    assert torch.allclose(outputs(model), outputs(plain), atol=1e-6)
    assert not torch.allclose(outputs(model), outputs(dense), atol=1e-3)
    assert masks_from_state_dict(model.state_dict()) == masks_from_state_dict(saved)
    assert all(not attn.skip_embed_dim_check for _, attn in head_masks.attention_modules(model))  # fast path back


class _Backward:
    """The one method of fairseq's optimizer that ``task.train_step`` calls."""

    def backward(self, loss):
        loss.backward()


def test_resuming_past_the_anneal_fixes_the_saved_mask_again_at_the_first_update(tmp_path):
    task, model, criterion = _dsp(tmp_path, "--np-dsp-heads", "27", "--np-dsp-anneal-updates", "4")
    _set_logits(task.dsp)
    task.dsp.freeze()
    frozen = copy.deepcopy(model.state_dict())
    resumed_task, resumed, _ = _dsp(tmp_path, "--np-dsp-heads", "27", "--np-dsp-anneal-updates", "4")
    resumed.load_state_dict(copy.deepcopy(frozen))
    assert not resumed_task.dsp.frozen and all(bool(head_masks.head_mask(a).all()) for _, a in head_masks.attention_modules(resumed))
    resumed.train()
    resumed_task.train_step(random_sample(resumed_task), resumed, criterion, _Backward(), update_num=6)
    assert resumed_task.dsp.frozen
    live_masks = {name: head_masks.head_mask(a).int().tolist() for name, a in head_masks.attention_modules(resumed)}
    assert live_masks == masks_from_state_dict(frozen) and sum(map(sum, live_masks.values())) == 27
    live = {k: v for k, v in resumed.state_dict().items() if not k.startswith("np_dsp_")}
    assert live.keys() == {k for k in frozen if not k.startswith("np_dsp_")}
    assert all(torch.equal(v, frozen[k]) for k, v in live.items())


def test_checkpoint_state_holds_the_hard_top_k_and_the_adamw_state(tmp_path):
    """Other loaders apply the hard mask and drop the np_dsp_* entries; a DSP resume restores the
    logits and their AdamW state, so its next step equals the uninterrupted one (a fresh AdamW's does not)."""
    dsp_task, gated, _ = _dsp(tmp_path, "--np-dsp-heads", "27")
    dsp = dsp_task.dsp
    for update in range(2):  # two steps from arbitrary gradients give the AdamW moments history
        dsp.begin_update(update)
        dsp.logits.grad = torch.randn(108, generator=torch.Generator().manual_seed(update), dtype=torch.float64)
        assert dsp.step(optimizer=None)
    state = gated.state_dict()
    assert set(ADAM_KEYS.values()) <= state.keys() and float(state[ADAM_KEYS["step"]]) == 2
    masks = masks_from_state_dict(state)
    assert torch.equal(torch.tensor(sum(masks.values(), []), dtype=torch.float64), keep_top_k(dsp.logits.detach(), SIZES, 27).double())
    assert all(bool(head_masks.head_mask(a).all()) for _, a in head_masks.attention_modules(gated))  # live model untouched

    _, plain, _ = build_in_process(tmp_path)
    plain.load_state_dict(copy.deepcopy(state))  # generation / export: np_dsp_* dropped, the mask applied
    attn = plain.encoder.layers[0].self_attn
    pruned = [h for h, m in enumerate(masks["encoder.layers.0.self_attn"]) if m == 0]
    d = attn.head_dim
    assert pruned and all(float(attn.q_proj.weight[h * d:(h + 1) * d].abs().sum()) == 0 for h in pruned)

    def next_logits(loaded_state):
        task, model, _ = _dsp(tmp_path, "--np-dsp-heads", "27")
        if loaded_state is not None:
            model.load_state_dict(copy.deepcopy(loaded_state))
            assert all(bool(head_masks.head_mask(a).all()) for _, a in head_masks.attention_modules(model))
        with torch.no_grad():
            task.dsp.logits.copy_(state[DSP_LOGITS_KEY])
        task.dsp.begin_update(2)
        task.dsp.logits.grad = torch.ones(108, dtype=torch.float64)
        task.dsp.step(optimizer=None)
        return task.dsp.logits.detach()

    dsp.begin_update(2)
    dsp.logits.grad = torch.ones(108, dtype=torch.float64)
    dsp.step(optimizer=None)
    assert torch.equal(next_logits(state), dsp.logits.detach())
    assert not torch.allclose(next_logits(None), dsp.logits.detach(), atol=1e-3)


def test_the_pruning_tools_load_a_dsp_checkpoint_with_its_saved_mask_and_prune_only_its_kept_heads(tmp_path):
    """tools.checkpoints.load_model (post_prune, one_shot, michel) rebuilds a DSP checkpoint under its own task,
    whose gates' load hook sets every mask to ones for a resume. The tools must see the saved hard top-K instead:
    magnitude pruning to 0.5 then zeroes half of each kept head's q/k/v rows (counted by hand from the file's
    masks) and leaves the removed heads zero; with all heads live it spends the share on the removed heads' zeros."""
    from fairseq import tasks
    from omegaconf import OmegaConf

    from neuroprune_fairseq.post_pruning import Settings, prune_model
    from neuroprune_fairseq.tools.checkpoints import load_model

    cfg = config_in_process(tmp_path, "--task", "dsp_translation", "--np-dsp-heads", "27")
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    _set_logits(task.dsp)
    task.dsp.freeze()  # as after the anneal: the removed heads are zero
    path = tmp_path / "dsp.pt"
    history = [{"criterion_name": cfg.criterion._name, "optimizer_name": "Adam", "lr_scheduler_state": {}, "num_updates": 243}]
    torch.save({"cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "model": model.state_dict(),
                "optimizer_history": history, "extra_state": {}}, path)  # the fields fairseq's checkpoint loader reads
    saved = masks_from_state_dict(torch.load(path, weights_only=False)["model"])
    loaded, _, _ = load_model(str(path), str(tmp_path), cpu=True)
    live = {name: head_masks.head_mask(a).int().tolist() for name, a in head_masks.attention_modules(loaded)}
    assert live == saved and sum(map(sum, live.values())) == 27

    prune_model(loaded, [], Settings(method="magnitude", sparsity=0.5))
    for name, attn in head_masks.attention_modules(loaded):
        d = attn.head_dim
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            heads = [proj.weight[h * d:(h + 1) * d] for h in range(attn.num_heads)]
            kept = torch.cat([w for w, m in zip(heads, saved[name]) if m])
            assert int((kept == 0).sum()) == kept.numel() // 2, name
            assert all(float(w.abs().sum()) == 0 for w, m in zip(heads, saved[name]) if not m), name


def test_first_logit_step_is_adamw_with_decoupled_decay_and_non_finite_gradients_are_skipped(tmp_path):
    """The first AdamW step (bias-corrected moments) moves each logit by about lr * sign(grad), after the
    decoupled decay lr * 1e-4; a NaN gradient (e.g. an fp16 overflow) leaves the logits as they are."""
    task, model, criterion = _dsp(tmp_path, "--np-dsp-heads", "54", "--np-dsp-temp-init", "1")
    model.train()
    task.dsp.begin_update(0)
    loss, sample_size, _ = criterion(model, random_sample(task))
    loss.backward()
    task.dsp.add_sample_size(sample_size)
    before = task.dsp.logits.detach().clone()
    grad = task.dsp.logits.grad.clone()
    assert task.dsp.step(optimizer=None) and task.dsp.logits.grad is None
    expected = before * (1 - 0.2 * 1e-4) - 0.2 * torch.sign(grad) * (grad.abs() / (grad.abs() + 1e-8 * sample_size))
    assert torch.allclose(task.dsp.logits.detach(), expected, atol=1e-6)
    task.dsp.begin_update(1)
    task.dsp.logits.grad = torch.full((108,), float("nan"), dtype=torch.float64)
    after = task.dsp.logits.detach().clone()
    assert not task.dsp.step(optimizer=None) and torch.equal(after, task.dsp.logits.detach())


@pytest.mark.parametrize("flags,message", [
    (["--np-dsp-heads", "200"], "--np-dsp-heads 200: cannot keep 200 heads"),
    (["--np-dsp-heads", "10"], "at least one per module"),
    (["--np-dsp-heads", "50", "--np-dsp-per-module"], "with --np-dsp-per-module: .*multiple of the 18 modules"),
    (["--np-dsp-heads", "54", "--np-dsp-lr", "0"], "--np-dsp-lr must be > 0"),
    (["--np-dsp-heads", "54", "--np-dsp-temp-final", "-1"], "--np-dsp-temp-final must be > 0"),
    (["--np-dsp-heads", "54", "--np-dsp-weight-decay", "-1"], "--np-dsp-weight-decay must be >= 0"),
    (["--np-dsp-heads", "54", "--np-dsp-anneal-updates", "0"], "--np-dsp-anneal-updates must be >= 1"),
])
def test_bad_dsp_flags_are_refused_by_name(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        _dsp(tmp_path, *flags)


def test_neuroprune_task_has_no_dsp_flags(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_in_process(tmp_path, "--np-dsp-heads", "54")
    assert "unrecognized arguments: --np-dsp-heads" in capsys.readouterr().err


# ---- real fairseq-train runs ----

ANNEAL = 6  # of 8 updates (4 per epoch)


def _run_flags(root, mode):
    return ["--np-dsp-heads", "27", "--np-dsp-mode", mode, "--np-dsp-anneal-updates", str(ANNEAL), "--max-update", "8",
            "--save-interval-updates", "1", "--keep-interval-updates", "-1",
            "--finetune-from-model", str(root / "dense" / "checkpoint_last.pt")]


def _by_update(save_dir):
    """Model state of every checkpoint in ``save_dir`` by its update count."""
    states = {}
    for path in save_dir.glob("checkpoint*.pt"):
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        states[ckpt["optimizer_history"][-1]["num_updates"]] = ckpt["model"]
    return states


def _train_until_killed(args, kill_at_update: int) -> None:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([str(BIN / "fairseq-train"), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        if f"num_updates={kill_at_update}," in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """A tiny corpus and a dense model trained on it for 2 epochs (4 updates each)."""
    root = tmp_path_factory.mktemp("dsp_runs")
    write_toy_corpus(root / "text")
    preprocess(root / "text", root / "bin")
    run("fairseq-train", *train_args(root / "bin", root / "dense", "--max-epoch", "2"))
    return root


def _args(root, name, mode):
    return train_args(root / "bin", root / name, *_run_flags(root, mode), task="dsp_translation")


@pytest.fixture(scope="module")
def joint(dense):
    log = run("fairseq-train", *_args(dense, "joint", "joint")).stdout
    return dict(states=_by_update(dense / "joint"), log=log)


@pytest.fixture(scope="module")
def killed(dense):
    _train_until_killed(_args(dense, "killed", "joint"), kill_at_update=3)  # inside gate learning
    log = run("fairseq-train", *_args(dense, "killed", "joint")).stdout
    return dict(states=_by_update(dense / "killed"), log=log)


@pytest.fixture(scope="module")
def pipelined(dense):
    run("fairseq-train", *_args(dense, "pipelined", "pipelined"))
    start = torch.load(dense / "dense" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    return dict(states=_by_update(dense / "pipelined"), start=start)


@pytest.mark.slow
def test_after_the_anneal_the_mask_and_logits_never_change_and_pruned_heads_stay_zero(joint):
    states, log = joint["states"], joint["log"]
    assert sorted(states) == list(range(1, 9))
    assert not torch.equal(states[1][DSP_LOGITS_KEY], states[ANNEAL][DSP_LOGITS_KEY])  # the gates did learn
    fixed = masks_from_state_dict(states[ANNEAL])
    assert sum(map(sum, fixed.values())) == 27
    for update in range(ANNEAL, 9):
        assert masks_from_state_dict(states[update]) == fixed
        for key in (DSP_LOGITS_KEY, *ADAM_KEYS.values()):
            assert torch.equal(states[update][key], states[ANNEAL][key]), (update, key)
        for module, mask in fixed.items():  # 6 heads of dim 8
            rows = torch.tensor(mask, dtype=torch.float).repeat_interleave(8)
            assert float(states[update][f"{module}.q_proj.weight"][rows == 0].abs().sum()) == 0
    assert not torch.equal(states[ANNEAL]["encoder.layers.0.fc1.weight"], states[8]["encoder.layers.0.fc1.weight"])  # it trains on
    inner = {}  # update -> (top-K changes, share of fractional gates) of its log line (--log-interval 1)
    for share, changes, update in re.findall(r"np_dsp_fractional=([0-9.]+), np_dsp_topk_changes=(\d+),.*?num_updates=(\d+),", log):
        inner[int(update)] = (int(changes), float(share))
    assert sorted(inner) == list(range(1, 9)) and sum(c for c, _ in inner.values()) > 0
    assert all(inner[u] == (0, 0.0) for u in range(ANNEAL + 1, 9))
    assert "dsp | after 6 updates: gate learning over, the hard top-27 is fixed" in log


@pytest.mark.slow
def test_a_sigkilled_run_resumes_with_the_same_logits_and_adamw_state(joint, killed):
    """Killed at update 3 of 6 of gate learning and resumed: every later checkpoint equals the
    uninterrupted run's bit for bit (logits, AdamW moments and step, weights and masks)."""
    assert re.search(r"Loaded checkpoint .*\(epoch 1 @ [23] updates\)", killed["log"])
    reference, resumed = joint["states"], killed["states"]
    assert sorted(resumed) == list(range(1, 9))
    for update in range(3, 9):
        assert resumed[update].keys() == reference[update].keys()
        for key, value in reference[update].items():
            assert torch.equal(resumed[update][key], value), (update, key)


@pytest.mark.slow
def test_pipelined_gate_learning_leaves_every_model_parameter_bit_identical(pipelined):
    dense, states = pipelined["start"], pipelined["states"]
    params = [k for k in dense if not k.endswith(MASK_BUFFER) and k != PRUNED_EPOCH_BUFFER]
    assert len(params) > 100
    for update in range(1, ANNEAL):
        assert all(torch.equal(states[update][k], dense[k]) for k in params), update
        assert not torch.equal(states[update][DSP_LOGITS_KEY], states[update + 1][DSP_LOGITS_KEY])  # the gates learn
    fixed = masks_from_state_dict(states[ANNEAL])  # the freeze zeroes the pruned heads, and nothing else
    rows = {m: torch.tensor(mask, dtype=torch.float).repeat_interleave(8) for m, mask in fixed.items()}
    expected = dict(dense)
    for module, r in rows.items():
        for proj in ("q_proj", "k_proj", "v_proj"):
            expected[f"{module}.{proj}.weight"] = dense[f"{module}.{proj}.weight"] * r[:, None]
            expected[f"{module}.{proj}.bias"] = dense[f"{module}.{proj}.bias"] * r
        expected[f"{module}.out_proj.weight"] = dense[f"{module}.out_proj.weight"] * r[None, :]
    assert all(torch.equal(states[ANNEAL][k], expected[k]) for k in params)
    assert not torch.equal(states[8]["encoder.layers.0.fc1.weight"], dense["encoder.layers.0.fc1.weight"])  # then it fine-tunes
