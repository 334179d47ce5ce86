"""The replicated clock: the leader's stamps, applied in log order, are a state machine's only time."""

from __future__ import annotations

import logging
from typing import Any, Dict

from consensus.errors import storage_error
from consensus.statemachines._codec import _field

log = logging.getLogger("consensus.statemachine")


#: Largest clock stamp `advance_clock` accepts (2^53 ms: about 285,000 years after 1970); a larger
#: one, a negative one or a non-integer is refused and counted, never applied.
CLOCK_MS_MAX = 1 << 53


class _ReplicatedClock:
    """The leader's clock, as replicated state: the only time a state machine may read.

    The runtime stamps every command with the leader's clock in milliseconds when it proposes it
    (the replicated clock when that leadership began plus the monotonic time since), and calls
    `advance_clock(stamp)` just before applying that command on every
    replica. The clock is the largest valid stamp applied so far: the same on every replica, never
    going backwards (a new leader with a slower clock leaves it where it is), kept in snapshots.
    A stamp outside 0..CLOCK_MS_MAX or not an integer is refused: it is counted in
    `invalid_clock_stamps` (local, not replicated) and logged, and the clock does not move.
    """

    _clock_ms: int = 0
    #: Stamps refused by `advance_clock` since this object was created (a diagnostic counter).
    invalid_clock_stamps: int = 0

    def advance_clock(self, time_ms: int) -> None:
        """Move the clock to `time_ms` if that is later; called before each stamped command."""
        if type(time_ms) is int and self._clock_ms < time_ms <= CLOCK_MS_MAX:  # the usual case
            self._clock_ms = time_ms
            return
        if isinstance(time_ms, bool) or not isinstance(time_ms, int) or not 0 <= time_ms <= CLOCK_MS_MAX:
            self._refuse_stamp(time_ms)
            return
        if time_ms > self._clock_ms:
            self._clock_ms = time_ms

    def _refuse_stamp(self, time_ms: object) -> None:
        self.invalid_clock_stamps += 1
        count = self.invalid_clock_stamps
        if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th, ...: a flood cannot flood the log
            log.warning(
                "%s: refused clock stamp %r (valid: integers 0..%d); %d refused so far",
                type(self).__name__, time_ms, CLOCK_MS_MAX, count,
            )

    @property
    def clock_ms(self) -> int:
        """The replicated clock: the largest valid stamp applied so far (0 before the first)."""
        return self._clock_ms


def _clock_field(body: Dict[str, Any], tag: str) -> int:
    clock_ms = _field(body, "clock_ms", int, tag)
    if not 0 <= clock_ms <= CLOCK_MS_MAX:
        raise storage_error("corrupt", f"{tag} snapshot: clock_ms out of range")
    return clock_ms




__all__ = ["CLOCK_MS_MAX"]
