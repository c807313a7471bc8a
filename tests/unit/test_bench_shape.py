"""Figure 2's bare workflow copies the usual life of a request, not whichever one was recorded."""

from __future__ import annotations

from benchmarks.raw_workflows import Shape

WAITS = ["update", "update", "child", "update"]


def shape(segments: list[int], *, waits: list[str] = WAITS, timers: int = 4, child_timers: int = 0) -> Shape:
    return Shape(segments=segments, waits=waits, timers=timers, child_activities=1, child_timers=child_timers)


def test_the_typical_shape_takes_each_count_s_median() -> None:
    typical = Shape.typical(
        [
            shape([3, 4, 1, 2, 1], timers=4, child_timers=1),
            shape([5, 4, 2, 2, 1], timers=3),
            shape([4, 4, 2, 2, 1], timers=4),
            shape([5, 4, 2, 2, 1], timers=4),
            shape([4, 3, 2, 2, 1], timers=5),
        ]
    )
    assert typical.segments == [4, 4, 2, 2, 1]
    assert typical.activities == 13
    assert typical.waits == WAITS
    assert (typical.timers, typical.child_timers, typical.child_activities) == (4, 0, 1)


def test_the_most_common_order_of_waits_wins_and_only_its_shapes_count() -> None:
    other = ["update", "child", "update"]
    typical = Shape.typical(
        [
            shape([9, 9, 9, 9], waits=other),
            shape([4, 4, 2, 2, 1]),
            shape([6, 4, 2, 2, 1]),
        ]
    )
    assert typical.waits == WAITS
    assert typical.segments == [4, 4, 2, 2, 1]  # the lower median of an even sample


def test_one_shape_is_its_own_typical() -> None:
    one = shape([5, 4, 2, 2, 1], child_timers=1)
    assert Shape.typical([one]) == one
