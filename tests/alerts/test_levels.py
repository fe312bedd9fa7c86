import pytest

from alerts.levels import evaluate

T = {"yellow": 85.0, "orange": 92.0, "red": 97.0}


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [
        (84.9, None, None),
        (85.0, None, "yellow"),
        (91.9, None, "yellow"),
        (92.0, None, "orange"),
        (97.0, None, "red"),
        (100.0, None, "red"),
        (84.0, "yellow", "yellow"),  # held: not yet 2 points below 85
        (82.9, "yellow", None),
        (96.0, "red", "red"),
        (94.9, "red", "orange"),
        (89.9, "orange", "yellow"),
        (82.9, "orange", None),
        (92.0, "yellow", "orange"),  # escalation is immediate
    ],
)
def test_level_for_reading(value, current, expected):
    assert evaluate(value, T, current, clear_margin=2.0) == expected


def test_disabled_level_is_skipped():
    without_orange = {"yellow": 85.0, "red": 97.0}
    assert evaluate(95.0, without_orange, None, 2.0) == "yellow"
    assert evaluate(97.5, without_orange, None, 2.0) == "red"


def test_hovering_value_does_not_flap():
    level, changes = None, 0
    for value in [84.9, 85.1, 84.9, 85.1, 84.8, 85.0, 83.5, 85.2]:
        new = evaluate(value, T, level, clear_margin=2.0)
        changes += new != level
        level = new
    assert (level, changes) == ("yellow", 1)


def test_zero_margin_clears_at_threshold():
    assert evaluate(84.99, T, "yellow", clear_margin=0.0) is None
