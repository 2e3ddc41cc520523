"""Michel et al. (2019) head-importance pruning of a fairseq checkpoint: keep K heads, write head masks.

Usage:
    python -m neuroprune_fairseq.tools.michel --checkpoint DENSE.pt --data-bin DIR --heads K --out PRUNED.pt \
        [--steps 1] [--normalize-per-module] [--subset valid] [--max-tokens 4096]

Importance of head h = sum over batches of |dL/dxi_h| (xi_h a gate on the head's output, computed from
the out-projection's ordinary gradient, see core.importance), with the checkpoint's own criterion in
eval mode (no dropout, no regularizer). ``--steps 1`` prunes in one shot; more steps prune to evenly
spaced head counts and re-score the pruned model before each step (Michel et al.'s iterative variant).
Every module keeps at least one head. The output is the input checkpoint with head masks set (pruned
heads' q/k/v rows and out columns zeroed), loadable by fairseq-generate and fine-tunable with
``--task neuroprune_translation --finetune-from-model``.
"""
import argparse
import json
from pathlib import Path

import torch

from neuroprune import checkpoint_stats
from neuroprune.cli import cpu_flag, overwrite_flag
from neuroprune.core.importance import head_gate_gradient, iterative_targets, normalize_per_module
from neuroprune.core.selection import keep_top_k, module_slices
from neuroprune.state_keys import short_name
from neuroprune.tools.outputs import prepare_output, require_inputs

from .. import head_masks
from ..model_parts import attention_modules
from .checkpoints import load_model, save_model_state


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                parents=[overwrite_flag("replace an existing --out"), cpu_flag("score")])
    p.add_argument("--checkpoint", required=True, help="fairseq checkpoint to prune (usually the dense pretrained one)")
    p.add_argument("--data-bin", required=True, help="fairseq-preprocess output directory with the scoring split")
    p.add_argument("--heads", type=int, required=True, help="heads to keep in total (K)")
    p.add_argument("--out", required=True, help="pruned checkpoint to write (refused if it exists, unless --overwrite)")
    p.add_argument("--steps", type=int, default=1, help="pruning rounds; >1 re-scores the pruned model before each round")
    p.add_argument("--normalize-per-module", action="store_true", help="divide each module's scores by their l2 norm (Michel et al.'s per-layer normalisation)")
    p.add_argument("--subset", default="valid", help="split whose loss gradients score the heads")
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens per scoring batch")
    p.add_argument("--max-batches", type=int, default=0, help="score on at most this many batches (0 = the whole split)")
    p.add_argument("--scores-json", default=None, help="also write each round's importance scores per module to this JSON file")
    return p.parse_args(argv)


def load(args):
    """The checkpoint's model (head masks attached), criterion and task, with data from --data-bin."""
    model, cfg, task = load_model(args.checkpoint, args.data_bin, args.cpu)
    return model, task.build_criterion(cfg.criterion), task


def scoring_batches(model, task, args):
    """The batches of --subset (at most --max-batches of them, 0 = all) that score the heads."""
    from fairseq import utils

    task.load_dataset(args.subset)
    batches = task.get_batch_iterator(
        dataset=task.dataset(args.subset), max_tokens=args.max_tokens, ignore_invalid_inputs=True, seed=1,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
    ).next_epoch_itr(shuffle=False)
    on_gpu = next(model.parameters()).is_cuda
    for i, sample in enumerate(batches):
        if args.max_batches and i >= args.max_batches:
            return
        yield utils.move_to_cuda(sample) if on_gpu else sample


def score_heads(model, criterion, batches):
    """Summed |dL/dxi_h| over ``batches``: one (num_heads,) tensor per attention module, in order."""
    modules = attention_modules(model)
    scores = [torch.zeros(attn.num_heads) for _, attn in modules]
    model.eval()
    for sample in batches:
        model.zero_grad()
        loss, _, _ = criterion(model, sample)
        loss.backward()
        for score, (_, attn) in zip(scores, modules):
            score += head_gate_gradient(attn.out_proj.weight, attn.out_proj.weight.grad, attn.num_heads).abs().cpu()
    model.zero_grad()
    return scores


def prune(model, criterion, batches, heads: int, steps: int, normalize: bool) -> list:
    """Michel et al.'s pruning of ``model`` to ``heads`` heads in ``steps`` rounds, re-scoring on
    ``batches`` (a list) before each; returns each round's per-module scores."""
    sizes = [attn.num_heads for _, attn in attention_modules(model)]
    rounds = []
    for target in iterative_targets(int(current_mask(model).sum()), heads, steps):
        per_module = score_heads(model, criterion, batches)
        if normalize:
            per_module = normalize_per_module(per_module)
        apply_mask(model, keep_top_k(torch.cat(per_module), sizes, target, active=current_mask(model)))
        rounds.append(per_module)
        print(f"michel | round {len(rounds)}/{steps}: kept {int(current_mask(model).sum())} heads")
    return rounds


def current_mask(model) -> torch.Tensor:
    return torch.cat([head_masks.head_mask(attn).detach().cpu() for _, attn in attention_modules(model)])


@torch.no_grad()
def apply_mask(model, mask: torch.Tensor) -> None:
    """Set every module's head mask from the flat (N,) ``mask`` and zero the masked heads."""
    modules = attention_modules(model)
    for (_, attn), part in zip(modules, module_slices([attn.num_heads for _, attn in modules])):
        head_masks.head_mask(attn).copy_(mask[part])
        head_masks.enforce_module(attn)


def check_args(args) -> None:
    require_inputs((args.checkpoint, "--checkpoint"), (args.data_bin, "--data-bin"))
    prepare_output(args.out, "--out", args.overwrite)
    if args.scores_json:
        prepare_output(args.scores_json, "--scores-json")
    if args.steps < 1:
        raise SystemExit(f"--steps must be >= 1, got {args.steps}")


def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    model, criterion, task = load(args)
    modules = attention_modules(model)
    sizes = [attn.num_heads for _, attn in modules]
    start = int(current_mask(model).sum())
    if not len(sizes) <= args.heads <= start:
        raise SystemExit(f"--heads {args.heads}: must be between {len(sizes)} (one per attention module) and the {start} heads now active")
    rounds = prune(model, criterion, list(scoring_batches(model, task, args)), args.heads, args.steps, args.normalize_per_module)
    save_model_state(checkpoint_stats.load_checkpoint(args.checkpoint), model, args.out)
    if args.scores_json:
        named = [{short_name(name): s.tolist() for (name, _), s in zip(modules, per_module)} for per_module in rounds]
        Path(args.scores_json).write_text(json.dumps({"rounds": named}, indent=2) + "\n")
    kept = head_masks.heads_kept(model)
    print("michel | heads kept per module: " + " ".join(f"{short_name(n)}={k}" for n, k in kept.items()))
    print(f"michel | wrote {args.out} with {sum(kept.values())}/{sum(sizes)} heads")


if __name__ == "__main__":
    main()
