"""The learning-rate schedule: planned over the steps, or over the time budget when that ends
first, so that a run cut by its budget still ends annealed."""

import math

import pytest
import torch

from model.training.schedule import BudgetSchedule, warmup_steps


def schedule(total_steps, kind="cosine", lr=1.0):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    return optimizer, BudgetSchedule(optimizer, kind, total_steps)


def test_without_a_budget_the_position_is_the_fraction_of_steps_taken():
    _, plan = schedule(200)
    for step in range(1, 201):
        plan.step()
        assert plan.position == pytest.approx(step / 200, abs=1e-12)


def test_cosine_decays_to_zero_after_a_linear_warm_up():
    optimizer, plan = schedule(1000, lr=0.5)
    warmup = warmup_steps(1000)
    assert warmup == 20
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 / warmup)
    lrs = []
    for _ in range(1000):
        plan.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(0.5, rel=0.01)
    assert lrs[499] == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.5)), rel=1e-6)
    assert lrs[-1] == 0.0


def test_a_budget_shorter_than_the_steps_anneals_by_the_time_it_ends():
    # 1,000,000 planned steps, but a 100-second budget and steps of 0.5 to 1.5 seconds: the
    # schedule follows the clock and reaches its end with the budget.
    optimizer, plan = schedule(1_000_000)
    elapsed, budget = 0.0, 100.0
    generator = torch.Generator().manual_seed(0)
    positions = []
    while elapsed < budget:
        seconds = 0.5 + torch.rand(1, generator=generator).item()
        elapsed += seconds
        plan.step(seconds, budget - elapsed)
        positions.append((elapsed, plan.position))
    assert plan.position == 1.0 and optimizer.param_groups[0]["lr"] == 0.0
    halfway = min(positions, key=lambda point: abs(point[0] - 50))
    assert halfway[1] == pytest.approx(0.5, abs=0.02)


def test_the_steps_end_the_schedule_when_they_run_out_before_the_budget():
    _, plan = schedule(100)
    for step in range(100):
        plan.step(0.01, 1000.0 - 0.01 * (step + 1))
    assert plan.position == pytest.approx(1.0)


def test_a_pause_moves_the_schedule_by_the_share_of_the_budget_it_took():
    # A validation that takes half the remaining budget moves half the remaining way.
    _, plan = schedule(1_000_000)
    plan.step(50.0, 50.0)
    assert plan.position == pytest.approx(0.5)


def test_constant_schedule_keeps_the_learning_rate():
    optimizer, plan = schedule(10, kind="constant", lr=0.3)
    for _ in range(12):
        plan.step(1.0, 0.0)
        assert optimizer.param_groups[0]["lr"] == 0.3


def test_state_round_trips_and_reads_a_step_only_state():
    _, plan = schedule(100)
    for _ in range(30):
        plan.step(1.0, 70.0)
    optimizer, restored = schedule(100)
    restored.load_state_dict(plan.state_dict())
    assert (restored.position, restored.step_count) == (plan.position, plan.step_count)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(plan.factor())
    # A checkpoint written by torch's LambdaLR holds only the step it reached.
    restored.load_state_dict({"last_epoch": 25, "base_lrs": [1.0]})
    assert (restored.step_count, restored.position) == (25, 0.25)
