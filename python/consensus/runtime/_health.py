"""Failure detectors: hints about which peers are alive, for pacing and operators, never safety.

Times are float seconds from `time.monotonic()`, passed in by the caller, so the detectors are
deterministic and testable without a clock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Deque, Dict, Iterable, List, Optional

from consensus.errors import config_error

#: Above this standardized distance the tail is computed from its asymptotic series; `math.erfc`
#: underflows a little beyond 26.
_ASYMPTOTIC_FROM = 25.0
#: Beyond this distance phi would overflow a float; it is clamped (phi stays finite).
_DISTANCE_MAX = 1e150
_LN_10 = math.log(10.0)
_LOG_HALF = math.log(0.5)
_LOG_SQRT_PI = 0.5 * math.log(math.pi)


def _check_number(field: str, value: object, *, minimum: float, inclusive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise config_error(field, f"must be a finite number, got {value!r}")
    number = float(value)
    if number < minimum or (not inclusive and number == minimum):
        bound = ">=" if inclusive else ">"
        raise config_error(field, f"must be {bound} {minimum}, got {value!r}")
    return number


def _log_erfc(x: float) -> float:
    """ln(erfc(x)), accurate also where erfc(x) itself underflows."""
    if x < _ASYMPTOTIC_FROM:
        return math.log(math.erfc(x))
    # erfc(x) = exp(-x²) / (x √π) · (1 - 1/(2x²) + 3/(4x⁴) - 15/(8x⁶) + ...). The series is
    # truncated after a negative term, so it errs low: phi can only step up where it takes over,
    # which keeps phi monotone in silence.
    inverse_square = 1.0 / (x * x)
    series = 1.0 - 0.5 * inverse_square + 0.75 * inverse_square**2 - 1.875 * inverse_square**3
    return -x * x - math.log(x) - _LOG_SQRT_PI + math.log(series)


#: Heartbeats between exact recomputations of the running sums.
_RESUM_EVERY = 64

class PhiAccrualDetector:
    """The φ accrual failure detector (Hayashibara, Défago, Yared, Katayama, 2004).

    Inter-arrival times of heartbeats, over a sliding window of `max_samples`, are modelled as a
    normal distribution with their mean (plus `acceptable_pause`) and population standard
    deviation (at least `min_std_dev`). After a silence of t seconds,
    ``phi = -log10(P(next interval > t)) = -log10(erfc((t - mean) / (std √2)) / 2)``.
    Until two heartbeats have arrived there is no interval yet: the mean is `first_interval`
    and the standard deviation `first_interval / 4` (floored likewise). Before the first
    heartbeat phi is 0: nothing is known, so nothing is suspected.
    """

    def __init__(
        self,
        threshold: float = 8.0,
        max_samples: int = 200,
        min_std_dev: float = 0.01,
        acceptable_pause: float = 0.0,
        first_interval: float = 0.5,
    ) -> None:
        self.threshold = _check_number("threshold", threshold, minimum=0.0, inclusive=False)
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
            raise config_error("max_samples", f"must be a positive int, got {max_samples!r}")
        self.max_samples = max_samples
        self.min_std_dev = _check_number("min_std_dev", min_std_dev, minimum=0.0, inclusive=False)
        self.acceptable_pause = _check_number("acceptable_pause", acceptable_pause, minimum=0.0, inclusive=True)
        self.first_interval = _check_number("first_interval", first_interval, minimum=0.0, inclusive=False)
        self._intervals: Deque[float] = deque(maxlen=max_samples)
        #: Running sums over `_intervals`, so a heartbeat costs O(1) (one per frame received).
        self._sum = 0.0
        self._sum_squares = 0.0
        self._last: Optional[float] = None
        self._mean = first_interval
        self._std_dev = max(first_interval / 4.0, self.min_std_dev)

    @property
    def last_heartbeat(self) -> Optional[float]:
        return self._last

    @property
    def intervals(self) -> List[float]:
        """The inter-arrival times in the window, oldest first."""
        return list(self._intervals)

    @property
    def mean(self) -> float:
        """The modelled mean interval, `acceptable_pause` not included."""
        return self._mean

    @property
    def std_dev(self) -> float:
        """The modelled standard deviation, floor applied."""
        return self._std_dev

    def heartbeat(self, now: float) -> None:
        """Record a heartbeat at `now`; times must not go backwards."""
        if self._last is not None:
            if now < self._last:
                raise ValueError(f"time went backwards: {now} < {self._last}")
            intervals = self._intervals
            interval = now - self._last
            if len(intervals) == intervals.maxlen:
                dropped = intervals[0]
                self._sum -= dropped
                self._sum_squares -= dropped * dropped
            intervals.append(interval)
            self._sum += interval
            self._sum_squares += interval * interval
            count = len(intervals)
            if count % _RESUM_EVERY == 0:
                # Running sums drift by rounding; recompute them exactly now and then.
                self._sum = math.fsum(intervals)
                self._sum_squares = math.fsum(i * i for i in intervals)
            mean = self._sum / count
            variance = max(self._sum_squares / count - mean * mean, 0.0)
            self._mean = mean
            self._std_dev = max(math.sqrt(variance), self.min_std_dev)
        self._last = now

    def phi(self, now: float) -> float:
        """Suspicion level after the silence since the last heartbeat: finite, >= 0, and never
        decreasing while the silence lasts."""
        if self._last is None:
            return 0.0
        elapsed = max(now - self._last, 0.0)
        distance = (elapsed - (self._mean + self.acceptable_pause)) / (self._std_dev * math.sqrt(2.0))
        distance = min(distance, _DISTANCE_MAX)
        log_p_later = _LOG_HALF + _log_erfc(distance)
        return max(0.0, -log_p_later / _LN_10)

    def is_available(self, now: float) -> bool:
        return self.phi(now) < self.threshold


class HeartbeatTimeoutDetector:
    """Suspects a peer after `timeout` seconds without a heartbeat (and one never heard from)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = _check_number("timeout", timeout, minimum=0.0, inclusive=False)
        self._last: Optional[float] = None

    def heartbeat(self, now: float) -> None:
        if self._last is None or now > self._last:
            self._last = now

    def silence(self, now: float) -> Optional[float]:
        """Seconds since the last heartbeat, or None if there was none."""
        if self._last is None:
            return None
        return max(now - self._last, 0.0)

    def is_available(self, now: float) -> bool:
        silence = self.silence(now)
        return silence is not None and silence < self.timeout


class _PeerDetectors:
    __slots__ = ("added_at", "timeout", "phi")

    def __init__(self, added_at: float, timeout: HeartbeatTimeoutDetector, phi: PhiAccrualDetector) -> None:
        self.added_at = added_at
        self.timeout = timeout
        self.phi = phi


class PeerHealth:
    """Both detectors for every peer. A peer is unavailable when either suspects it; one never
    heard from is suspected only once `timeout` has passed since it was added."""

    def __init__(
        self,
        peers: Iterable[int],
        *,
        timeout: float,
        phi_threshold: float = 8.0,
        now: Optional[float] = None,
        max_samples: int = 200,
        min_std_dev: float = 0.01,
        acceptable_pause: float = 0.0,
        first_interval: Optional[float] = None,
    ) -> None:
        self.timeout = _check_number("timeout", timeout, minimum=0.0, inclusive=False)
        self.phi_threshold = _check_number("phi_threshold", phi_threshold, minimum=0.0, inclusive=False)
        self._phi_options = dict(
            threshold=self.phi_threshold,
            max_samples=max_samples,
            min_std_dev=min_std_dev,
            acceptable_pause=acceptable_pause,
            # Without a better guess, expect a heartbeat well within the timeout.
            first_interval=self.timeout / 2 if first_interval is None else first_interval,
        )
        PhiAccrualDetector(**self._phi_options)  # type: ignore[arg-type]  # validate once, early
        self._peers: Dict[int, _PeerDetectors] = {}
        start = time.monotonic() if now is None else now
        for peer in peers:
            self.add_peer(peer, now=start)

    @property
    def peers(self) -> List[int]:
        return sorted(self._peers)

    def add_peer(self, peer: int, now: Optional[float] = None) -> None:
        """Start watching `peer` (no effect if already watched); its grace period starts `now`."""
        if peer in self._peers:
            return
        self._peers[peer] = _PeerDetectors(
            time.monotonic() if now is None else now,
            HeartbeatTimeoutDetector(self.timeout),
            PhiAccrualDetector(**self._phi_options),  # type: ignore[arg-type]
        )

    def remove_peer(self, peer: int) -> None:
        self._peers.pop(peer, None)

    def heartbeat(self, peer: int, now: float) -> None:
        """Record a sign of life from `peer` (any frame will do); unknown peers are ignored."""
        detectors = self._peers.get(peer)
        if detectors is None:
            return
        detectors.timeout.heartbeat(now)
        last = detectors.phi.last_heartbeat
        if last is None or now >= last:
            detectors.phi.heartbeat(now)

    def _judge(self, detectors: _PeerDetectors, now: float) -> Dict[str, object]:
        silence = detectors.timeout.silence(now)
        if silence is None:
            timeout_suspect = now - detectors.added_at >= self.timeout
        else:
            timeout_suspect = silence >= self.timeout
        phi = detectors.phi.phi(now)
        phi_suspect = phi >= self.phi_threshold
        return {
            "available": not (timeout_suspect or phi_suspect),
            "phi": phi,
            "silence_seconds": silence,
            "timeout_suspect": timeout_suspect,
            "phi_suspect": phi_suspect,
        }

    def unavailable(self, now: float) -> List[int]:
        """Peers that either detector suspects, in id order."""
        return [peer for peer in sorted(self._peers) if not self._judge(self._peers[peer], now)["available"]]

    def snapshot(self, now: float) -> Dict[int, Dict[str, object]]:
        """Per peer: available, phi, silence_seconds (None if never heard), timeout_suspect, phi_suspect."""
        return {peer: self._judge(self._peers[peer], now) for peer in sorted(self._peers)}


__all__ = ["HeartbeatTimeoutDetector", "PeerHealth", "PhiAccrualDetector"]
