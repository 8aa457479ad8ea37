"""Learning-rate schedules (Sec. 3.4, 4.2)."""

import math

import pytest

from reslab.train.schedule import LRSchedule


def test_step_schedule_of_the_paper():
    s = LRSchedule(base_lr=0.1, total_iters=64000, milestones=(32000, 48000))
    assert s.lr(0) == 0.1 and s.lr(31999) == 0.1
    assert s.lr(32000) == pytest.approx(0.01) and s.lr(47999) == pytest.approx(0.01)
    assert s.lr(48000) == pytest.approx(0.001) and s.lr(63999) == pytest.approx(0.001)


def test_resnet110_warmup_until_error_below_80_percent():
    s = LRSchedule(base_lr=0.1, total_iters=100, milestones=(50,), warmup_lr=0.01)
    assert s.lr(0) == 0.01
    s.observe_train_error(0.85)
    assert s.lr(10) == 0.01
    s.observe_train_error(0.79)
    assert s.lr(11) == 0.1
    s.observe_train_error(0.95)  # the warm-up does not come back
    assert s.lr(12) == 0.1


def test_plateau_divides_after_patience():
    s = LRSchedule(base_lr=0.1, total_iters=10, kind="plateau", patience=2)
    for error in (0.5, 0.4, 0.41, 0.42):
        s.observe_val_error(error)
    assert s.lr(5) == pytest.approx(0.01)
    s.observe_val_error(0.39)
    assert s.lr(6) == pytest.approx(0.01)


def test_cosine_and_state_round_trip():
    s = LRSchedule(base_lr=0.2, total_iters=100, kind="cosine")
    assert s.lr(0) == pytest.approx(0.2) and s.lr(50) == pytest.approx(0.1)
    assert s.lr(100) == pytest.approx(0.0, abs=1e-12)
    a = LRSchedule(base_lr=0.1, total_iters=10, kind="plateau", patience=1, warmup_lr=0.01)
    a.observe_train_error(0.5)
    a.observe_val_error(0.3)
    a.observe_val_error(0.4)
    b = LRSchedule(base_lr=0.1, total_iters=10, kind="plateau", patience=1, warmup_lr=0.01)
    b.load_state_dict(a.state_dict())
    assert b.lr(3) == a.lr(3) == pytest.approx(0.01) and not b.warming_up
    assert math.isclose(b.best_val_error, 0.3)


def test_linear_decays_in_a_straight_line_to_zero():
    s = LRSchedule(base_lr=0.2, total_iters=100, kind="linear")
    assert [s.lr(i) for i in (0, 25, 50, 99)] == pytest.approx([0.2, 0.15, 0.1, 0.002])
    assert s.lr(100) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ramp_then_decay_over_the_rest(kind):
    s = LRSchedule(base_lr=0.2, total_iters=110, kind=kind, ramp_iters=10)
    assert [s.lr(i) for i in (0, 4, 9)] == pytest.approx([0.02, 0.1, 0.2])
    assert s.lr(10) == pytest.approx(0.2)  # the decay starts at the top of the ramp...
    assert s.lr(60) == pytest.approx(0.1)  # ...and is halfway through the remaining 100
    assert s.lr(110) == pytest.approx(0.0, abs=1e-12)


def test_ramp_before_step_and_plateau():
    s = LRSchedule(base_lr=0.1, total_iters=100, milestones=(50,), ramp_iters=4)
    assert [s.lr(i) for i in (0, 3, 49, 50)] == pytest.approx([0.025, 0.1, 0.1, 0.01])
    p = LRSchedule(base_lr=0.1, total_iters=100, kind="plateau", ramp_iters=2)
    assert [p.lr(0), p.lr(1), p.lr(50)] == pytest.approx([0.05, 0.1, 0.1])
