"""Failure detectors: phi accrual against hand-computed values, timeout detector, PeerHealth."""

from __future__ import annotations

import math
from typing import List

import pytest

from consensus import ConfigError
from consensus.runtime import HeartbeatTimeoutDetector, PeerHealth, PhiAccrualDetector


def expected_phi(elapsed: float, intervals: List[float], *, floor: float = 0.01, pause: float = 0.0) -> float:
    """The paper's formula, written out independently of the implementation."""
    mean = sum(intervals) / len(intervals)
    std = math.sqrt(sum((x - mean) ** 2 for x in intervals) / len(intervals))
    std = max(std, floor)
    p_later = 0.5 * math.erfc((elapsed - (mean + pause)) / (std * math.sqrt(2)))
    return -math.log10(p_later)


def beat_at(detector: PhiAccrualDetector, times: List[float]) -> None:
    for t in times:
        detector.heartbeat(t)


def test_phi_regular_100ms_arrivals_is_small_on_time_and_above_8_after_500ms() -> None:
    detector = PhiAccrualDetector()
    beat_at(detector, [i * 0.1 for i in range(20)])
    last = 1.9
    assert detector.phi(last + 0.1) < 1.0
    assert detector.is_available(last + 0.1)
    assert detector.phi(last + 0.5) > 8.0
    assert not detector.is_available(last + 0.5)


def test_phi_of_jittery_arrivals_uses_mean_and_std_dev_of_the_window() -> None:
    times = [0.0, 0.1, 0.25, 0.33, 0.5, 0.62]
    intervals = [b - a for a, b in zip(times, times[1:])]
    detector = PhiAccrualDetector(min_std_dev=0.001)
    beat_at(detector, times)
    assert detector.mean == pytest.approx(sum(intervals) / len(intervals))
    for elapsed in (0.05, 0.12, 0.2, 0.3):
        assert detector.phi(0.62 + elapsed) == pytest.approx(expected_phi(elapsed, intervals, floor=0.001))


def test_phi_window_slides_and_forgets_old_intervals() -> None:
    sliding = PhiAccrualDetector(max_samples=3, min_std_dev=0.05)
    keeping = PhiAccrualDetector(max_samples=10, min_std_dev=0.05)
    # Two slow intervals of 1 s, then three fast ones of 0.1 s: only the fast ones remain.
    times = [0.0, 1.0, 2.0, 2.1, 2.2, 2.3]
    beat_at(sliding, times)
    beat_at(keeping, times)
    assert sliding.intervals == pytest.approx([0.1, 0.1, 0.1])
    assert sliding.mean == pytest.approx(0.1)
    assert sliding.phi(2.5) == pytest.approx(expected_phi(0.2, [0.1, 0.1, 0.1], floor=0.05))
    all_intervals = [1.0, 1.0, 0.1, 0.1, 0.1]
    assert keeping.phi(2.5) == pytest.approx(expected_phi(0.2, all_intervals, floor=0.05))
    assert sliding.phi(2.5) > keeping.phi(2.5)


def test_phi_std_dev_is_floored_at_min_std_dev() -> None:
    detector = PhiAccrualDetector(min_std_dev=0.05)
    beat_at(detector, [0.0, 0.2, 0.4, 0.6])  # identical intervals: std dev 0 before the floor
    assert detector.std_dev == 0.05
    assert detector.phi(0.6 + 0.3) == pytest.approx(expected_phi(0.3, [0.2, 0.2, 0.2], floor=0.05))


def test_acceptable_pause_shifts_the_distribution() -> None:
    plain = PhiAccrualDetector(min_std_dev=0.05)
    paused = PhiAccrualDetector(min_std_dev=0.05, acceptable_pause=0.3)
    for detector in (plain, paused):
        beat_at(detector, [0.0, 0.2, 0.4, 0.6])
    # With the pause, a silence of 0.5 s looks like a silence of 0.2 s without it.
    assert paused.phi(0.6 + 0.5) == pytest.approx(plain.phi(0.6 + 0.2))
    assert paused.phi(0.6 + 0.5) == pytest.approx(expected_phi(0.5, [0.2] * 3, floor=0.05, pause=0.3))


def test_phi_is_finite_and_monotone_during_a_long_silence() -> None:
    detector = PhiAccrualDetector()
    beat_at(detector, [i * 0.1 for i in range(10)])
    previous = 0.0
    for step in range(1, 5000):
        value = detector.phi(0.9 + step * 0.002)
        assert math.isfinite(value)
        assert value >= previous
        previous = value
    for far in (20.0, 1e6, 1e12, 1e200):
        value = detector.phi(far)
        assert math.isfinite(value) and value >= previous
        previous = value


def test_before_the_second_heartbeat_first_interval_is_the_mean() -> None:
    detector = PhiAccrualDetector(first_interval=0.5)
    assert detector.phi(100.0) == 0.0  # never heard: nothing to suspect
    detector.heartbeat(10.0)
    # Mean 0.5, std dev 0.5 / 4: at +0.5 s the next heartbeat is as likely late as early.
    assert detector.phi(10.5) == pytest.approx(-math.log10(0.5))
    assert detector.phi(10.5 + 0.125 * 3) == pytest.approx(-math.log10(0.5 * math.erfc(3 / math.sqrt(2))))


def test_phi_rejects_time_going_backwards_and_bad_parameters() -> None:
    detector = PhiAccrualDetector()
    detector.heartbeat(5.0)
    with pytest.raises(ValueError):
        detector.heartbeat(4.0)
    for field, kwargs in (
        ("threshold", {"threshold": 0}),
        ("max_samples", {"max_samples": 0}),
        ("min_std_dev", {"min_std_dev": -1.0}),
        ("acceptable_pause", {"acceptable_pause": float("nan")}),
        ("first_interval", {"first_interval": 0}),
    ):
        with pytest.raises(ConfigError) as info:
            PhiAccrualDetector(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == field


def test_timeout_detector_suspects_after_timeout_of_silence() -> None:
    detector = HeartbeatTimeoutDetector(timeout=1.0)
    assert detector.silence(3.0) is None
    assert not detector.is_available(3.0)
    detector.heartbeat(3.0)
    assert detector.is_available(3.5)
    assert detector.silence(3.5) == pytest.approx(0.5)
    assert not detector.is_available(4.0)
    detector.heartbeat(4.2)
    assert detector.is_available(4.3)
    with pytest.raises(ConfigError):
        HeartbeatTimeoutDetector(timeout=0)


def test_peer_health_gives_new_peers_a_grace_period_of_one_timeout() -> None:
    health = PeerHealth([2, 3], timeout=1.0, now=100.0)
    assert health.unavailable(100.5) == []
    snapshot = health.snapshot(100.5)
    assert snapshot[2]["available"] is True and snapshot[2]["silence_seconds"] is None
    assert health.unavailable(101.0) == [2, 3]
    health.add_peer(4, now=101.0)
    assert health.unavailable(101.5) == [2, 3]


def test_peer_health_recovers_after_a_heartbeat_and_reports_both_detectors() -> None:
    health = PeerHealth([2], timeout=1.0, now=0.0)
    for i in range(10):
        health.heartbeat(2, 0.1 * i)
    assert health.unavailable(1.0) == []
    # A long silence: phi suspects first (regular 100 ms beats), then the timeout too.
    state = health.snapshot(1.4)[2]
    assert state["phi_suspect"] is True and state["timeout_suspect"] is False
    assert state["available"] is False
    assert health.unavailable(2.0) == [2]
    assert health.snapshot(2.0)[2]["timeout_suspect"] is True
    health.heartbeat(2, 2.0)
    state = health.snapshot(2.01)[2]
    assert state["available"] is True
    assert state["silence_seconds"] == pytest.approx(0.01)
    health.remove_peer(2)
    assert health.snapshot(5.0) == {}
    health.heartbeat(2, 5.0)  # unknown peers are ignored
    assert health.unavailable(5.0) == []
