"""Choosing the similarity threshold of an elimination pass from a head budget.

The paper's head count is only an implicit function of theta (its stated limitation). Here a pass is
asked for a total number of heads: the threshold is searched among the distances that actually occur.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .heads import EliminationPlan, ModuleDistances, plan_from_distances


def kept_heads(plan: EliminationPlan) -> int:
    """Active heads left after ``plan``."""
    return len({keeper for keeper in plan.kept_for if keeper != -1})


def candidate_thetas(modules: Sequence[ModuleDistances]) -> List[float]:
    """The pairwise head distances present in the modules, ascending: the only thresholds at which a pass changes."""
    return sorted({float(d) for m in modules for i, row in enumerate(m.distances) for d in row[i + 1 :]})


def scheduled_target(total: int, budget: int, pass_index: int, passes: int) -> int:
    """Heads to keep after pass ``pass_index`` (1-based) of a linear schedule from ``total`` to ``budget``.

    Pass ``i`` of ``passes`` aims at ``budget + (total - budget) * (passes - i) / passes`` (rounded up);
    every pass after the last aims at ``budget``.
    """
    remaining = max(passes - pass_index, 0)
    return budget + -(-(total - budget) * remaining // passes)


@dataclass
class ThetaChoice:
    """The outcome of :func:`choose_theta`.

    Attributes:
        theta: threshold to use, or None when no threshold removes a head without going below the floor.
        kept: total heads that threshold keeps.
        reached: whether ``kept <= target``.
    """

    theta: Optional[float]
    kept: int
    reached: bool


def choose_theta(modules: Sequence[ModuleDistances], target: int, floor: int) -> ThetaChoice:
    """The smallest theta whose pass keeps at most ``target`` heads in total and at least ``floor``.

    Candidates are the pairwise distances present in the modules, tried in ascending order. When no
    candidate reaches ``target`` without going below ``floor``, the candidate that keeps the fewest heads
    (still >= ``floor``) is returned with ``reached=False``.

    Args:
        modules: distances of every attention module's active heads.
        target: heads to keep after this pass.
        floor: never keep fewer heads than this (the budget).
    """
    current = sum(len(m.live) for m in modules)
    best = ThetaChoice(theta=None, kept=current, reached=current <= target)
    if best.reached:
        return best
    for theta in candidate_thetas(modules):
        kept = sum(kept_heads(plan_from_distances(m, theta)) for m in modules)
        if floor <= kept < best.kept:
            best = ThetaChoice(theta=theta, kept=kept, reached=kept <= target)
            if best.reached:
                return best
    return best


def exact_budget_plans(modules: Sequence[ModuleDistances], target: int) -> Tuple[Optional[float], List[EliminationPlan]]:
    """Plans that keep exactly ``target`` heads in total, so that every method of a comparison keeps the
    same number: the smallest theta whose passes keep at most ``target``, then, while fewer are kept, the
    pruned head farthest from its keeper (over all modules; the later module and head first on equal
    distances) is restored: it stays active and is not folded.

    Args:
        modules: distances of every attention module's active heads.
        target: heads to keep (at least the number of modules: each keeps one).
    Returns:
        (theta, plans, one per module); (None, []) when the modules already keep at most ``target``.
    """
    if target < len(modules):
        raise ValueError(f"a budget of {target} heads cannot keep one head in each of {len(modules)} modules")
    if sum(len(m.live) for m in modules) <= target:
        return None, []
    for theta in candidate_thetas(modules):  # the largest distance makes every module one group: its pass keeps len(modules)
        plans = [plan_from_distances(m, theta) for m in modules]
        kept = sum(kept_heads(p) for p in plans)
        if kept <= target:
            break
    farthest = sorted(((float(m.distances[m.live.index(h), m.live.index(p.kept_for[h])]), i, h)
                       for i, (m, p) in enumerate(zip(modules, plans)) for h in p.pruned), reverse=True)
    for _, i, h in farthest[: target - kept]:
        plans[i].kept_for[h] = h
    return theta, plans
