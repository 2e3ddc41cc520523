"""Export a pruned checkpoint as a physically smaller fairseq model.

Usage:
    python -m neuroprune_fairseq.tools.export --checkpoint IN.pt --out OUT.pt [--eps 1e-4] [--overwrite]

Masked heads (mask 0, whatever their weights hold) leave the q/k/v rows and out-projection columns; FFN
units whose fc1 row and fc2 column are all |w| < eps leave fc1/fc2, their constant output folded into
fc2's bias. The result loads with ``fairseq-generate DATA --user-dir neuroprune_fairseq --path OUT.pt``
(``--task translation`` or ``neuroprune_translation``). Optimizer state is not copied.
"""
import argparse
import os
import warnings

import torch
from fairseq import checkpoint_utils
from omegaconf import OmegaConf

from neuroprune.checkpoint_stats import attention_module_names, parameter_total
from neuroprune.cli import eps_flag, exit_on_value_error, overwrite_flag
from neuroprune.state_keys import short_name
from neuroprune.tools.outputs import prepare_output, require_inputs

from .. import shrink_checkpoint as sc


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[
        eps_flag("an FFN unit is removed when all its fc1-row and fc2-column weights have |w| below this"),
        overwrite_flag("replace an existing --out file")])
    p.add_argument("--checkpoint", required=True, help="fairseq transformer checkpoint (.pt) with head masks and/or near-zero FFN weights")
    p.add_argument("--out", required=True, help="exported checkpoint to write (refused if it exists, unless --overwrite)")
    return p.parse_args(argv)


def load(path: str) -> dict:
    """The checkpoint as fairseq reads it (legacy ``args`` upgraded to ``cfg``), cfg as plain containers;
    ``ValueError`` naming ``path`` when it is not a fairseq transformer checkpoint."""
    try:
        with warnings.catch_warnings():  # torch's note that the plugin's TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is in effect
            warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
            ckpt = checkpoint_utils.load_checkpoint_to_cpu(path)
        ckpt["cfg"] = OmegaConf.to_container(ckpt["cfg"], resolve=True, enum_to_str=True)
        model_args = sc.transformer_args(ckpt["cfg"])
    except Exception as e:  # torch.load / fairseq's upgrade raise many types for foreign files
        raise ValueError(f"{path} is not a fairseq transformer checkpoint ({type(e).__name__}: {e})") from e
    if not attention_module_names(ckpt.get("model") or {}):
        raise ValueError(f"{path} is not a fairseq transformer checkpoint (no attention weights in its model state)")
    ckpt["cfg"]["model"] = model_args
    return ckpt


def summary(before: sc.Shapes, after: sc.Shapes, params: tuple, sizes: tuple, dropped_optimizer: bool) -> str:
    """Human-readable before -> after figures."""
    heads = " ".join(f"{short_name(m)}={before['heads'][m]}->{n}" for m, n in after["heads"].items())
    lines = [f"heads: {sum(before['heads'].values())} -> {sum(after['heads'].values())} ({heads})",
             f"FFN units: {sum(before['ffn'].values())} -> {sum(after['ffn'].values())}"]
    lines += [f"  {layer}: {before['ffn'][layer]} -> {units}" for layer, units in after["ffn"].items()]
    lines.append(f"parameters: {params[0]:,} -> {params[1]:,} ({params[1] / params[0]:.1%})")
    note = " (the input's optimizer state is not copied)" if dropped_optimizer else ""
    lines.append(f"file size: {sizes[0] / 1e6:.2f} MB -> {sizes[1] / 1e6:.2f} MB{note}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    require_inputs((args.checkpoint, "--checkpoint"))
    if args.eps <= 0:
        raise SystemExit(f"--eps must be > 0, got {args.eps}")
    out = prepare_output(args.out, "--out", args.overwrite)
    with exit_on_value_error("--checkpoint: "):
        ckpt = load(args.checkpoint)
    model_args, state = ckpt["cfg"]["model"], ckpt["model"]
    with exit_on_value_error(f"--checkpoint: {args.checkpoint}: "):
        shrunk = sc.shrink_state(state, model_args, args.eps)
    before, after = sc.model_shapes(state, model_args), sc.model_shapes(shrunk, model_args)
    ckpt["cfg"]["model"] = sc.exported_args(model_args, after)
    ckpt.update(model=shrunk, args=None)
    dropped_optimizer = ckpt.pop("last_optimizer_state", None) is not None
    partial = out.with_name(out.name + ".partial")
    torch.save(ckpt, partial)
    os.replace(partial, out)
    result = {
        "shapes_before": before, "shapes_after": after,
        "params": (parameter_total(state), parameter_total(shrunk)),
        "bytes": (os.path.getsize(args.checkpoint), os.path.getsize(out)),
    }
    print(summary(before, after, result["params"], result["bytes"], dropped_optimizer))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
