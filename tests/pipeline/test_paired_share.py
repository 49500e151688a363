"""A ratio target is judged on each bench round's own candidate ÷ dense ratio, not on medians taken apart."""

import statistics

import pytest

from edgekd.pipeline.measure import paired_share

# CI's rounds (stop 31): the shared host flipped between a fast and a ~1.5-2x slower state within seconds
CANDIDATE = [0.149, 0.3028, 0.1486, 0.3057, 0.3033]
DENSE = [0.4112, 0.4208, 0.4153, 0.6092, 0.6174]


def test_paired_rounds_keep_a_slow_spell_on_both_sides():
    separate = statistics.median(CANDIDATE) / statistics.median(DENSE)
    assert separate == pytest.approx(0.7196, abs=1e-4)  # a slow candidate against a fast dense: a false miss at 0.7
    assert paired_share(CANDIDATE, DENSE) == pytest.approx(0.3033 / 0.6174)  # rounds: 0.36 0.72 0.36 0.50 0.49


def test_a_uniform_drift_cancels_round_by_round():
    dense = [1.0, 2.0, 1.0, 2.0, 2.0]
    assert paired_share([0.5 * d for d in dense], dense) == pytest.approx(0.5)


def test_rounds_that_do_not_pair_are_refused():
    with pytest.raises(ValueError, match="pairing 2 bench rounds with 3"):
        paired_share([1.0, 1.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        paired_share([], [])
