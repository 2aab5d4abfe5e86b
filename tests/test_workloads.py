import time

import pytest

from bench.measure.workloads import TrainPlan, block_sizes, train_once, trainer_metrics
from bench.modes.base import Trainer
from sumnet.data import make_test_set


def test_blocks_end_on_evaluation_steps():
    sizes = block_sizes(3000, 100)
    assert sum(sizes) == 2999  # the first call is step 1
    assert sizes[0] == 99 and set(sizes[1:]) == {100} and len(sizes) == 30
    assert block_sizes(250, 100) == [99, 100, 50]
    assert block_sizes(1, 100) == []


def _fake_trainer(first_s: float, step_s: float) -> Trainer:
    """A trainer whose first step costs first_s and later ones step_s, predicting the exact sums."""
    calls = [0]

    def step():
        calls[0] += 1
        end = time.perf_counter() + (first_s if calls[0] == 1 else step_s)
        while time.perf_counter() < end:
            pass
        return 0.5

    return Trainer(step=step, predict=lambda x: x.sum(dim=1, keepdim=True), inference=lambda x: lambda: None)


def _train_once(plan: TrainPlan):
    trainer = _fake_trainer(0.05, 0.001)
    return train_once(trainer.step, "cpu", plan, trainer_metrics(trainer, make_test_set(100)))


def test_train_once_keeps_the_first_call_apart():
    result = _train_once(TrainPlan(steps=300, repeats=1))
    assert result.first_call_s >= 0.05
    assert len(result.step_s) == 2  # blocks ending at 200 and 300; the block ending at 100 is warm-up
    assert all(0.001 <= s < 0.003 for s in result.step_s)
    assert result.steps_to_target == 100 and result.verdict.converged
    assert sorted(result.loss_curve) == [100, 200, 300]


@pytest.mark.parametrize("steps", [50, 100])
def test_short_runs_do_not_fold_the_first_call_into_the_step_time(steps):
    result = _train_once(TrainPlan(steps=steps, repeats=1))
    assert result.step_s and all(s < 0.003 for s in result.step_s)  # the 50 ms first call is not in it
