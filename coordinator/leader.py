"""Which coordinator places work: an election through the broker, as a state machine.

Any number of coordinators may run; one is active. The broker holds the decision, as the
retained `coordinator/leader` claim (`LeaderClaim`: id, run, epoch, lease). The holder renews
it every `renew_s`; a coordinator that sees no live claim (none, or none renewed for the
holder's `lease_s`, timed on its own monotonic clock since the last renewal it saw) claims
with the highest epoch it has seen + 1, waits `settle_s` after its claim came back from the
broker, and is active unless it saw a higher (epoch, id, run) meanwhile. No consensus of our
own: the broker orders the claims, and every reader applies the same rule to what it sees.

Safety does not rest on the claims alone:

- **Self-fencing.** The active coordinator places work only while it has seen its own renewal
  come back within `lease_s - margin_s`. A standby waits the full `lease_s` after the last
  renewal it saw, and `settle_s` more, so a leader cut off from the broker has stopped placing
  before anyone else may start.
- **Epochs.** Every dispatch carries the epoch; agents remember the highest they have seen
  (from dispatches and from this claim) and ignore work from a lower one, so whatever a
  deposed leader still sends is harmless.

No will clears the claim: MQTT gives a connection one will, the coordinator's is its
`coordinator/status`, and on amqtt wills are not sent at all. The lease is what decides, on
every broker. A graceful stop clears the claim (an empty retained message), so a standby
takes over at once.

This module does no I/O and reads no clock: the service (coordinator/service.py) feeds it what
it sees and the time, and publishes what it returns; tests/test_leader.py drives it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edgehive.schemas import LeaderClaim


class Role(str, Enum):
    STANDBY = "standby"
    CLAIMING = "claiming"  # our claim is out; active once it settles without a higher one
    ACTIVE = "active"


def rank(claim: LeaderClaim) -> tuple[int, str, str]:
    """Of two claims the higher rank wins: epoch first, then id, then run (only a tie-break)."""
    return (claim.epoch, claim.id, claim.run)


@dataclass(frozen=True)
class Timing:
    """The election's durations, in seconds (CoordinatorSettings derives them from the heartbeat)."""

    lease_s: float  # a claim not renewed for this long is dead
    renew_s: float  # the holder renews this often
    settle_s: float  # a new claim waits this long for a higher one before it holds
    margin_s: float  # the holder stops placing this much before its lease could lapse anywhere

    def __post_init__(self) -> None:
        if not 0 < self.renew_s < self.lease_s - self.margin_s:
            raise ValueError("the claim must be renewed more often than lease_s - margin_s, or the holder fences itself")
        if self.margin_s <= 0 or self.settle_s <= 0:
            raise ValueError("margin_s and settle_s must be positive")


@dataclass
class Decision:
    """What one tick asks for: a claim to publish (retained), and the role changes."""

    publish: LeaderClaim | None = None
    became_active: bool = False
    deposed: bool = False  # was active, saw a higher claim: stop at once and stand by


class Election:
    """One coordinator's view of the leadership, changed only by `observe`, `connected`,
    `disconnected` and `tick`; `placing(now)` says whether it may place work now."""

    def __init__(self, me: str, run: str, timing: Timing) -> None:
        self.me, self.run, self.timing = me, run, timing
        self.role = Role.STANDBY
        self.epoch = 0  # ours, while claiming or active
        self.highest = 0  # the highest epoch seen anywhere
        self.holder: LeaderClaim | None = None  # the claim we last saw from someone else
        self.holder_seen = 0.0  # when we last saw it (renewed)
        self.echo_at: float | None = None  # when our own claim last came back from the broker
        self.claimed_at = 0.0
        self.renewed_at = 0.0
        self.is_connected = False
        self.listen_until = 0.0  # after a connect, the retained claim may still be on its way
        self._renew_now = False
        self._deposed = False

    # -- what we see ---------------------------------------------------------------------------

    def connected(self, now: float) -> None:
        self.is_connected = True
        self.listen_until = now + self.timing.settle_s
        if self.role is not Role.STANDBY:
            self._renew_now = True  # the broker may have lost the retained claim

    def disconnected(self, now: float) -> None:
        """Cut off: no echo can come, so `placing` turns false by itself within the margin; a
        standby's view of the holder stays as it was (it is timed from the last renewal seen)."""
        self.is_connected = False

    def observe(self, claim: LeaderClaim | None, now: float) -> None:
        """A message on `coordinator/leader`: a claim, or None for an empty (cleared) one."""
        if claim is None:
            if self.role is Role.STANDBY:
                self.holder = None  # released: nobody holds it
            else:
                self._renew_now = True  # ours was cleared (a stale clear): put it back
            return
        self.highest = max(self.highest, claim.epoch)
        if claim.id == self.me and claim.run == self.run:
            if self.role is not Role.STANDBY and claim.epoch == self.epoch:
                self.echo_at = now
            return
        if self.role is Role.STANDBY:
            self.holder, self.holder_seen = claim, now
            return
        if rank(claim) > rank(self._mine(0.0)):
            self._deposed = self.role is Role.ACTIVE
            self.role = Role.STANDBY
            self.holder, self.holder_seen = claim, now
            self.echo_at = None
        elif self.role is Role.ACTIVE:
            self._renew_now = True  # a lower claim overwrote ours in the broker: put ours back

    # -- what we do -----------------------------------------------------------------------------

    def holder_alive(self, now: float) -> bool:
        """Someone else's claim was renewed within its lease (as we timed it)."""
        return self.holder is not None and now - self.holder_seen < self.holder.lease_s

    def tick(self, now: float, wall: float, caught_up: bool = True) -> Decision:
        """`caught_up`: nothing we received is still unread. A standby that is behind its input
        never claims: the renewal it waits for may be among what it has not read yet."""
        decision = Decision(deposed=self._deposed)
        self._deposed = False
        if not self.is_connected:
            return decision
        timing = self.timing
        if self.role is Role.STANDBY:
            if now >= self.listen_until and caught_up and not self.holder_alive(now):
                self.role = Role.CLAIMING
                self.epoch = self.highest + 1
                self.highest = self.epoch
                self.claimed_at = self.renewed_at = now
                self.echo_at = None
                decision.publish = self._mine(wall)
        elif self.role is Role.CLAIMING:
            if self.echo_at is not None and now - self.echo_at >= timing.settle_s:
                self.role = Role.ACTIVE
                self.renewed_at = now
                decision.became_active = True
                decision.publish = self._mine(wall)
            elif now - self.renewed_at >= timing.lease_s:  # never came back (dropped?): say it again
                self.renewed_at = now
                decision.publish = self._mine(wall)
        elif self._renew_now or now - self.renewed_at >= timing.renew_s:
            self.renewed_at = now
            decision.publish = self._mine(wall)
        self._renew_now = False
        return decision

    def placing(self, now: float) -> bool:
        """Active, and our own renewal came back recently enough that no one else can have
        taken over: the only state in which the coordinator places work."""
        return (self.role is Role.ACTIVE and self.is_connected and self.echo_at is not None
                and now - self.echo_at < self.timing.lease_s - self.timing.margin_s)

    def release(self) -> bool:
        """A graceful stop: True if we held the claim (the caller clears it), and we stand by."""
        held = self.role is not Role.STANDBY
        self.role = Role.STANDBY
        return held

    def _mine(self, wall: float) -> LeaderClaim:
        return LeaderClaim(id=self.me, run=self.run, epoch=max(self.epoch, 1), lease_s=self.timing.lease_s, ts=wall)
