"""The medianstop-floor rule (earlystop/rule.py): pure decisions, no gRPC."""

import pytest

from earlystop.rule import Settings, best_so_far, parse_settings, should_stop, stop_value


def test_best_so_far_takes_the_best_of_the_first_start_step_values():
    curve = [0.5, 0.8, 0.7, 0.99]
    assert best_so_far(curve, "maximize", 3) == 0.8  # the 0.99 at step 4 is not seen yet
    assert best_so_far(curve, "minimize", 3) == 0.5
    assert best_so_far(curve, "maximize", 5) is None  # not reached start_step
    assert best_so_far(curve, "maximize", 4) == 0.99


def test_stop_value_is_the_true_median_not_the_mean():
    comparable = [0.1, 0.2, 0.9]  # mean 0.4, median 0.2
    assert stop_value(comparable, "maximize", None, 3) == 0.2
    assert stop_value([0.1, 0.2, 0.4, 0.9], "maximize", None, 3) == pytest.approx(0.3)


def test_too_few_comparable_trials_give_no_rule():
    assert stop_value([0.5, 0.6], "maximize", 0.9, 3) is None
    assert stop_value([], "minimize", None, 1) is None


def test_floor_caps_the_bar_for_maximize():
    comparable = [0.97, 0.98, 0.99]  # median 0.98 is above the floor
    value = stop_value(comparable, "maximize", 0.9653, 3)
    assert value == 0.9653
    assert not should_stop(0.9653, value, "maximize")  # at the floor: never stopped
    assert not should_stop(0.975, value, "maximize")  # below the median but above the floor
    assert should_stop(0.96, value, "maximize")
    # floor above the median changes nothing
    assert stop_value([0.5, 0.6, 0.7], "maximize", 0.9653, 3) == 0.6


def test_floor_mirrors_for_minimize():
    comparable = [0.1, 0.2, 0.3]  # loss: median 0.2
    assert stop_value(comparable, "minimize", 0.25, 3) == 0.25
    assert not should_stop(0.22, 0.25, "minimize")
    assert should_stop(0.26, 0.25, "minimize")
    assert stop_value(comparable, "minimize", 0.15, 3) == 0.2


def test_should_stop_is_strict_like_katib():
    assert not should_stop(0.5, 0.5, "maximize")
    assert not should_stop(0.5, 0.5, "minimize")


def test_bad_goal_is_refused():
    with pytest.raises(ValueError, match="goal"):
        stop_value([1.0], "max", None, 1)


def test_parse_settings_defaults_and_values():
    assert parse_settings([]) == Settings(min_trials_required=3, start_step=4, floor=None)
    s = parse_settings([("min_trials_required", "5"), ("start_step", "2"), ("floor", "0.9653")])
    assert s == Settings(min_trials_required=5, start_step=2, floor=0.9653)


@pytest.mark.parametrize(
    "name, value",
    [
        ("min_trials_required", "0"),
        ("min_trials_required", "two"),
        ("min_trials_required", "1.5"),
        ("start_step", "0"),
        ("start_step", "-1"),
        ("floor", "high"),
        ("floor", "nan"),
        ("floor", "inf"),
    ],
)
def test_parse_settings_names_the_bad_setting(name, value):
    with pytest.raises(ValueError, match=f"^{name} "):
        parse_settings([(name, value)])


def test_parse_settings_refuses_unknown_and_repeated_names():
    with pytest.raises(ValueError, match="unknown setting 'flor'"):
        parse_settings([("flor", "0.9")])
    with pytest.raises(ValueError, match="floor is given twice"):
        parse_settings([("floor", "0.9"), ("floor", "0.8")])
