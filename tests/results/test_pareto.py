import math

from edgekd.results.pareto import pareto_front


def test_front_keeps_only_the_points_nothing_beats():
    points = [(10.0, 0.90), (5.0, 0.80), (7.0, 0.70), (3.0, 0.60), (12.0, 0.85), (5.0, 0.75)]
    # (7, .70) is beaten by (5, .80); (12, .85) by (10, .90); (5, .75) by (5, .80)
    assert pareto_front(points) == [3, 1, 0]


def test_front_edge_cases():
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 0.5)]) == [0]
    assert pareto_front([(2.0, 0.5), (2.0, 0.5)]) == [0, 1]  # equal points do not dominate each other
    assert pareto_front([(1.0, 0.5), (1.0, 0.9)]) == [1]  # same cost: the better one only
    assert pareto_front([(1.0, 0.9), (2.0, 0.9)]) == [0]  # same quality: the cheaper one only
    assert pareto_front([(math.nan, 0.99), (None, 1.0), (4.0, 0.1)]) == [2]  # missing values never count


def test_front_is_exactly_the_non_dominated_set():
    import random

    rng = random.Random(0)
    for _ in range(50):
        points = [(rng.randint(1, 8) * 1.0, rng.randint(1, 8) / 10) for _ in range(rng.randint(1, 12))]
        expected = {i for i, (x, y) in enumerate(points)
                    if not any(u <= x and v >= y and (u, v) != (x, y) for u, v in points)}
        front = pareto_front(points)
        assert set(front) == expected, points
        assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)
