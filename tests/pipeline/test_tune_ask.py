"""How ``edgekd tune`` turns measured rounds into the next ask (pure arithmetic, no board)."""

from __future__ import annotations

import pytest

from edgekd.pipeline.tune import MeasuredRound, next_ask

FLOOR, DENSE = (1.0, 0.25), 6.0  # the floor network: 1 ms predicted, measured at 0.25 of the dense p50


def test_before_round_one_the_ask_is_on_the_chord_from_floor_to_dense():
    # share 0.625 is halfway from 0.25 to 1.0: halfway from 1 ms to 6 ms
    assert next_ask(FLOOR, DENSE, [], 0.625) == pytest.approx(3.5)


def test_a_round_that_lands_on_the_curve_moves_the_ask_along_it():
    landed = MeasuredRound(ask_ms=3.5, predicted_ms=3.5, share=0.8)  # slower than the chord said (0.625)
    ask = next_ask(FLOOR, DENSE, [landed], 0.625)
    # on the segment floor → round 1 (0.25 → 0.8) and under the miss's proportional bound 3.5 × 0.625 / 0.8
    assert ask == pytest.approx(min(1.0 + (0.625 - 0.25) / 0.55 * 2.5, 3.5 * 0.625 / 0.8))
    assert ask < 3.5


def test_a_round_measured_as_slow_as_the_dense_network_still_lowers_the_ask():
    # seen in CI with one random MetaSchedule trial per task: predicted at 0.4 of the dense, measured at 1.03;
    # sorted by share the curve ignores it, and the ask would have gone up again
    wild = MeasuredRound(ask_ms=2.48, predicted_ms=2.45, share=1.03)
    ask = next_ask(FLOOR, DENSE, [wild], 0.49)
    assert ask <= 2.45 * 0.49 / 1.03 * (2.48 / 2.45) + 1e-9 and ask < 2.45


def test_the_learner_overshooting_its_ask_is_corrected_within_bounds():
    # the learner delivered 4.0 ms when asked 3.0 (ratio 0.75): the curve's 4.4 ms (on round 1 → dense) is
    # scaled by 0.8, the bound, not by 0.75
    over = MeasuredRound(ask_ms=3.0, predicted_ms=4.0, share=0.5)
    assert next_ask(FLOOR, DENSE, [over], 0.6) == pytest.approx(0.8 * (4.0 + (0.6 - 0.5) / 0.5 * 2.0))


def test_the_ask_stays_between_the_floor_and_the_dense_network():
    assert next_ask(FLOOR, DENSE, [], 0.1) == pytest.approx(1.0)
    assert next_ask(FLOOR, DENSE, [], 1.5) == pytest.approx(6.0)
    missed = MeasuredRound(ask_ms=1.2, predicted_ms=1.2, share=0.9)
    assert next_ask(FLOOR, DENSE, [missed], 0.3) == pytest.approx(1.0)


def test_misses_in_a_row_step_further_than_the_chord_to_the_floor():
    # the curve bows above its chords: 0.8 then 0.75 for a wanted 0.6. The chord floor → round 2 alone would ask
    # 2.4 ms and land short again; with two misses the floor's offset (0.6 − 0.25) is halved (Illinois)
    first = MeasuredRound(ask_ms=4.0, predicted_ms=4.0, share=0.8)
    second = MeasuredRound(ask_ms=3.0, predicted_ms=3.0, share=0.75)
    floor_share = 0.6 - (0.6 - 0.25) / 2
    ask = next_ask(FLOOR, DENSE, [first, second], 0.6)
    assert ask == pytest.approx(1.0 + (0.6 - floor_share) / (0.75 - floor_share) * 2.0)
    assert ask < 1.0 + (0.6 - 0.25) / (0.75 - 0.25) * 2.0
    third = MeasuredRound(ask_ms=ask, predicted_ms=ask, share=0.7)  # a third miss halves it again
    assert next_ask(FLOOR, DENSE, [first, second, third], 0.6) < 1.0 + (0.6 - floor_share) / (0.7 - floor_share) * (
        ask - 1.0)
