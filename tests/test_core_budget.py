"""Head budgets: the schedule and the choice of theta on hand-built distances."""
import pytest
import torch

from neuroprune.core.budget import choose_theta, scheduled_target
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
