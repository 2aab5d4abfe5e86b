import pytest

from bench.measure import timing
from bench.measure.workloads import TrainPlan, block_sizes, train_once, trainer_metrics
from bench.modes.base import Trainer
from sumnet.data import make_test_set


def test_blocks_end_on_evaluation_steps():
    sizes = block_sizes(3000, 100)
    assert sum(sizes) == 2999  # the first call is step 1
    assert sizes[0] == 99 and set(sizes[1:]) == {100} and len(sizes) == 30
    assert block_sizes(250, 100) == [99, 100, 50]
    assert block_sizes(1, 100) == []


class _Clock:
    """bench.measure.timing's clock, advanced only by the fake trainer: times that load cannot move."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(timing, "time", fake)
    return fake


def _fake_trainer(clock: _Clock, first_s: float, step_s: float) -> Trainer:
    """A trainer whose first step costs first_s and later ones step_s, predicting the exact sums."""
    calls = [0]

    def step():
        calls[0] += 1
        clock.now += first_s if calls[0] == 1 else step_s
        return 0.5

    return Trainer(step=step, predict=lambda x: x.sum(dim=1, keepdim=True), inference=lambda x: lambda: None)


def _train_once(clock: _Clock, plan: TrainPlan):
    trainer = _fake_trainer(clock, 0.05, 0.001)
    return train_once(trainer.step, "cpu", plan, trainer_metrics(trainer, make_test_set(100)))


def test_train_once_keeps_the_first_call_apart(clock):
    result = _train_once(clock, TrainPlan(steps=300, repeats=1))
    assert result.first_call_s == pytest.approx(0.05)
    assert result.step_s == pytest.approx([0.001, 0.001])  # blocks ending at 200 and 300; 100 is warm-up
    assert result.run_s == pytest.approx(0.05 + 299 * 0.001)
    assert result.steps_to_target == 100 and result.verdict.converged
    assert sorted(result.loss_curve) == [100, 200, 300]


@pytest.mark.parametrize("steps", [50, 100])
def test_short_runs_do_not_fold_the_first_call_into_the_step_time(clock, steps):
    result = _train_once(clock, TrainPlan(steps=steps, repeats=1))
    assert result.step_s == pytest.approx([0.001])  # folded in, the 50 ms first call would make it 2 ms
