"""Head budgets: the schedule and the choice of theta on hand-built distances."""
import pytest
import torch

from neuroprune.core.budget import choose_theta, exact_budget_plans, kept_heads, scheduled_target
from neuroprune.core.heads import ModuleDistances


def _modules():
    a = ModuleDistances(num_heads=3, live=[0, 1, 2], distances=torch.tensor([[0.0, 0.1, 0.5], [0.1, 0.0, 0.5], [0.5, 0.5, 0.0]]))
    b = ModuleDistances(num_heads=2, live=[0, 1], distances=torch.tensor([[0.0, 0.3], [0.3, 0.0]]))
    return [a, b]


def test_linear_schedule_reaches_the_budget_at_the_last_pass():
    assert [scheduled_target(108, 54, i, 3) for i in (1, 2, 3, 4)] == [90, 72, 54, 54]
    assert scheduled_target(108, 27, 1, 1) == 27


def test_smallest_theta_that_reaches_the_target():
    assert choose_theta(_modules(), target=4, floor=1).theta == pytest.approx(0.1)  # merges heads 0, 1 of the first module
    choice = choose_theta(_modules(), target=3, floor=1)
    assert (choice.theta, choice.kept, choice.reached) == (pytest.approx(0.3), 3, True)


def test_never_below_the_floor_and_reports_when_target_is_unreachable():
    choice = choose_theta(_modules(), target=2, floor=3)
    assert (choice.theta, choice.kept, choice.reached) == (pytest.approx(0.3), 3, False)


def test_target_already_met_prunes_nothing():
    choice = choose_theta(_modules(), target=5, floor=1)
    assert choice.theta is None and choice.reached


def test_exact_budget_restores_the_pruned_head_farthest_from_its_keeper():
    # one theta keeps 3 (0.3: both modules merge their close heads) and the next 2 heads; target 3 needs theta 0.3,
    # target 2 needs 0.5 (first module to one head, second to one), nothing to restore.
    theta, plans = exact_budget_plans(_modules(), target=3)
    assert theta == pytest.approx(0.3) and sum(kept_heads(p) for p in plans) == 3
    theta, plans = exact_budget_plans(_modules(), target=2)
    assert theta == pytest.approx(0.5) and [p.kept_for for p in plans] == [[2, 2, 2], [1, 1]]


def test_exact_budget_overshoots_then_keeps_the_least_similar_pruned_heads():
    # a: three heads 0.1 apart (one theta folds two of them at once); b: two heads 0.05 apart. 5 heads in all:
    # theta 0.05 keeps 4, theta 0.1 keeps 2. Target 3: theta 0.1, then one pruned head restored: one of a's
    # (0.1 from its keeper, head 2, the later one on equal distances), not b's (0.05 from its keeper).
    a = ModuleDistances(num_heads=3, live=[0, 1, 2], distances=torch.tensor([[0.0, 0.1, 0.1], [0.1, 0.0, 0.1], [0.1, 0.1, 0.0]]))
    b = ModuleDistances(num_heads=2, live=[0, 1], distances=torch.tensor([[0.0, 0.05], [0.05, 0.0]]))
    theta, plans = exact_budget_plans([a, b], target=3)
    assert theta == pytest.approx(0.1)
    assert [p.kept_for for p in plans] == [[2, 1, 2], [1, 1]]
    assert sum(kept_heads(p) for p in plans) == 3


def test_exact_budget_refuses_fewer_heads_than_modules_and_leaves_a_small_model_alone():
    with pytest.raises(ValueError, match="one head in each of 2 modules"):
        exact_budget_plans(_modules(), target=1)
    assert exact_budget_plans(_modules(), target=5) == (None, [])
