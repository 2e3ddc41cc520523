"""The topology report: exact figures on a hand-built checkpoint, masked heads counted as removed, the CLI."""
import argparse
import json
import math
import statistics

import pytest
import torch

from neuroprune import checkpoint_stats
from neuroprune.core.topology import degree_histogram, neuron_degrees
from neuroprune.tools import report
from neuroprune_fairseq.tools import evaluate

EMBED, FFN = 4, 3
HEADS = {"encoder": 2, "decoder": 2}  # head_dim 2
MODULES = ["encoder.layers.0.self_attn", "decoder.layers.0.self_attn", "decoder.layers.0.encoder_attn"]


def _state(dsp: bool = False):
    """All attention weights 1 except q[0, 0] of the encoder module; decoder self keeps head 1, cross keeps head 0.

    With ``dsp`` the masked heads' weights stay non-zero in the file (DSP stores only the mask).
    FFN: encoder units have degrees 8, 3 and 0 (unit 2 holds 1e-5 < eps); decoder units are all 8.
    """
    state = {}
    for module, mask in zip(MODULES, ([1, 1], [0, 1], [1, 0])):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            state[f"{module}.{proj}.weight"] = torch.ones(EMBED, EMBED)
            state[f"{module}.{proj}.bias"] = torch.ones(EMBED)
        state[f"{module}.np_head_mask"] = torch.tensor(mask, dtype=torch.float)
    state["encoder.layers.0.self_attn.q_proj.weight"][0, 0] = 0.0
    if not dsp:
        for module, rows in (("decoder.layers.0.self_attn", slice(0, 2)), ("decoder.layers.0.encoder_attn", slice(2, 4))):
            for proj in ("q_proj", "k_proj", "v_proj"):
                state[f"{module}.{proj}.weight"][rows] = 0.0
                state[f"{module}.{proj}.bias"][rows] = 0.0
            state[f"{module}.out_proj.weight"][:, rows] = 0.0
    fc1, fc2 = torch.ones(FFN, EMBED), torch.ones(EMBED, FFN)  # (ffn, embed), (embed, ffn)
    fc1[1] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    fc1[2] = 1e-5
    fc2[:, 1] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    fc2[:, 2] = 0.0
    state.update({"encoder.layers.0.fc1.weight": fc1, "encoder.layers.0.fc2.weight": fc2,
                  "decoder.layers.0.fc1.weight": torch.ones(FFN, EMBED), "decoder.layers.0.fc2.weight": torch.ones(EMBED, FFN)})
    return state


def _save(tmp_path, state, name="checkpoint.pt"):
    path = tmp_path / name
    cfg = {"model": argparse.Namespace(encoder_embed_dim=EMBED, encoder_attention_heads=2, decoder_attention_heads=2)}
    torch.save({"model": state, "cfg": cfg}, path)
    return str(path)


def test_heads_and_masks_per_module_in_module_order():
    """Masks are listed in state-dict order with short labels; kept/total come from them."""
    topo = checkpoint_stats.topology(_state(), HEADS, 1e-4)
    assert [(m["label"], m["mask"]) for m in topo["head_masks"]] == [("enc0.self", [1, 1]), ("dec0.self", [0, 1]), ("dec0.cross", [1, 0])]
    assert topo["heads_per_module"] == dict(zip(MODULES, [2, 1, 1]))
    assert (topo["heads_kept"], topo["heads_total"]) == (4, 6)


def test_sparsity_per_matrix_type_is_exact():
    """q: 1 explicit zero + 2 masked heads x 8 entries of 48; k/v/out: 16 of 48; fc1: 7 of 24; fc2: 6 of 24."""
    sparsity = checkpoint_stats.topology(_state(), HEADS, 1e-4)["weight_sparsity"]
    assert sparsity["by_type"] == {"q": 17 / 48, "k": 16 / 48, "v": 16 / 48, "out": 16 / 48, "fc1": 7 / 24, "fc2": 6 / 24}
    assert sparsity["overall"] == 78 / 240


def test_ffn_degrees_dead_units_std_and_histogram():
    """Encoder degrees 8, 3, 0 (one dead unit); decoder 8, 8, 8; the histogram has 8 unit-width bins over [0, 8]."""
    ffn = checkpoint_stats.topology(_state(), HEADS, 1e-4)["ffn"]
    enc, dec = ffn["layers"]
    assert (enc["label"], enc["width"], enc["dead"]) == ("enc0.ffn", 3, 1)
    assert math.isclose(enc["degree_mean"], 11 / 3) and math.isclose(enc["degree_std"], statistics.pstdev([8, 3, 0]))
    assert (dec["dead"], dec["degree_mean"], dec["degree_std"]) == (0, 8.0, 0.0)
    assert (ffn["width"], ffn["dead"]) == (6, 1)
    assert math.isclose(ffn["degree_std"], statistics.pstdev([8, 3, 0, 8, 8, 8]))
    assert ffn["histogram"] == {"edges": [float(e) for e in range(9)], "counts": [1, 0, 0, 1, 0, 0, 0, 4]}


def test_neuron_degree_counts_fc1_rows_and_fc2_columns():
    fc1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # (ffn=2, embed=2)
    fc2 = torch.tensor([[0.0, 0.0], [2.0, 0.0], [3.0, 0.0]])  # (embed_out=3, ffn=2)
    assert neuron_degrees(fc1, fc2, 1e-4).tolist() == [3, 0]
    assert degree_histogram(torch.tensor([0, 5]), max_degree=5, bins=5)[1] == [1, 0, 0, 0, 1]  # max lands in the last bin


def test_penalties_match_direct_computation_on_masked_weights():
    """R_attn = sum over modules and input columns of sqrt(column l1 of [q; k; v]); R_mlp = near-zero share x row l1."""
    pen = checkpoint_stats.topology(_state(), HEADS, 1e-4)["penalties"]
    assert math.isclose(pen["R_attn"], math.sqrt(11) + 3 * math.sqrt(12) + 8 * math.sqrt(6), rel_tol=1e-6)
    fc1_rows = 3 / 4 * 1 + 1.0 * 4e-5  # row 1 (3 of 4 near zero, l1 1) and row 2 (all near zero, l1 4e-5)
    fc2_rows = 4 * (2 / 3) * ((1 + 1) / 2)  # rows 0-1: 1/3 x 2, rows 2-3: 2/3 x 1
    assert math.isclose(pen["R_mlp"], fc1_rows + fc2_rows, rel_tol=1e-6)


def test_dsp_style_mask_over_nonzero_weights_counts_as_removed():
    """A stored mask whose heads still hold weights gives the figures of the zeroed checkpoint, file untouched."""
    dsp, zeroed = _state(dsp=True), _state()
    assert checkpoint_stats.weight_sparsity(dsp, 1e-4) == checkpoint_stats.weight_sparsity(zeroed, 1e-4) == 78 / 240
    assert checkpoint_stats.parameter_counts(dsp, 1e-4) == checkpoint_stats.parameter_counts(zeroed, 1e-4)
    assert checkpoint_stats.topology(dsp, HEADS, 1e-4) == checkpoint_stats.topology(zeroed, HEADS, 1e-4)
    assert float(dsp["decoder.layers.0.self_attn.q_proj.weight"][0].abs().sum()) == 4.0


def test_exported_checkpoint_counts_heads_from_rows():
    """Without masks, heads kept = q rows // head_dim (head_dim = out_proj rows / heads); kept heads listed first."""
    state = {k: v for k, v in _state().items() if not k.endswith("np_head_mask")}
    for module, rows in (("decoder.layers.0.self_attn", slice(2, 4)), ("decoder.layers.0.encoder_attn", slice(0, 2))):
        for proj in ("q_proj", "k_proj", "v_proj"):
            state[f"{module}.{proj}.weight"] = state[f"{module}.{proj}.weight"][rows]
        state[f"{module}.out_proj.weight"] = state[f"{module}.out_proj.weight"][:, rows]
    topo = checkpoint_stats.topology(state, HEADS, 1e-4)
    assert [m["mask"] for m in topo["head_masks"]] == [[1, 1], [1, 0], [1, 0]]
    assert (topo["heads_kept"], topo["heads_total"]) == (4, 6)


def test_architecture_heads_from_namespace_mapping_or_legacy_args():
    """fairseq stores model arguments as a Namespace, a DictConfig (a mapping) or, in old checkpoints, ``args``."""
    expected = {"encoder": 4, "decoder": 8}
    args = argparse.Namespace(encoder_attention_heads=4, decoder_attention_heads=8)
    assert checkpoint_stats.architecture_heads({"cfg": {"model": args}}) == expected
    assert checkpoint_stats.architecture_heads({"cfg": {"model": vars(args)}}) == expected
    assert checkpoint_stats.architecture_heads({"cfg": None, "args": args}) == expected
    assert checkpoint_stats.architecture_heads({}) == {"encoder": 0, "decoder": 0}


def test_cli_writes_json_prints_grid_and_refuses_overwrite(tmp_path, capsys):
    ckpt, out = _save(tmp_path, _state()), tmp_path / "reports" / "r.json"
    report.main(["--checkpoint", ckpt, "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["checkpoint"] == ckpt and written["heads_kept"] == 4 and written["ffn"]["dead"] == 1
    printed = capsys.readouterr().out
    assert "enc0.self   ##" in printed and "dec0.self   .#" in printed and "dec0.cross  #." in printed
    assert "heads kept 4/6" in printed and "R_attn" in printed
    with pytest.raises(SystemExit, match=r"--out: .*r.json exists; pass --overwrite"):
        report.main(["--checkpoint", ckpt, "--out", str(out)])
    report.main(["--checkpoint", ckpt, "--out", str(out), "--overwrite", "--eps", "1e-6"])
    assert json.loads(out.read_text())["ffn"]["dead"] == 0  # unit 2's 1e-5 weights count at --eps 1e-6


def test_cli_errors_name_the_flag_and_path(tmp_path):
    """Missing, unreadable or head-count-less checkpoints and an uncreatable output folder give one-line errors."""
    ckpt = _save(tmp_path, _state())
    with pytest.raises(SystemExit, match=r"--checkpoint: .*missing.pt does not exist"):
        report.main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "r.json")])
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(SystemExit, match=r"--checkpoint: .*notes.txt is not a readable torch checkpoint"):
        report.main(["--checkpoint", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "r.json")])
    unmasked = {k: v for k, v in _state().items() if not k.endswith("np_head_mask")}
    torch.save({"model": unmasked, "cfg": None}, tmp_path / "no_cfg.pt")
    with pytest.raises(SystemExit, match=r"--checkpoint: .*self_attn has no head mask and its head count is unknown"):
        report.main(["--checkpoint", str(tmp_path / "no_cfg.pt"), "--out", str(tmp_path / "r.json")])
    with pytest.raises(SystemExit, match=r"--out: cannot write to .*notes.txt/sub"):
        report.main(["--checkpoint", ckpt, "--out", str(tmp_path / "notes.txt" / "sub" / "r.json")])


def test_evaluation_record_carries_the_topology(tmp_path, monkeypatch):
    """evaluate.checkpoint_record keeps its top-level fields and adds the report under 'topology'; its weight
    sparsity counts exact zeros only (unit 2's 1e-5 weights are not zero), masked heads included. (The exported
    parameter count needs a real fairseq model: tests/test_e2e_fairseq.py checks it.)"""
    monkeypatch.setattr(evaluate, "exported_parameters", lambda ckpt, state: -1)
    ckpt = checkpoint_stats.load_checkpoint(_save(tmp_path, _state(dsp=True)))
    record = evaluate.checkpoint_record(ckpt, ckpt["model"], 1e-4)
    assert (record["heads_kept"], record["heads_total"], record["weight_sparsity"]) == (4, 6, 74 / 240)  # 78 near zero less the four 1e-5
    assert record["sparsity_definition"] == "exact_zero" and record["params"]["exported"] == -1
    assert record["heads_per_module"] == dict(zip(MODULES, [2, 1, 1]))
    assert record["topology"]["head_masks"][1]["mask"] == [0, 1]
    assert record["topology"]["ffn"]["histogram"]["counts"] == [1, 0, 0, 1, 0, 0, 0, 4]
