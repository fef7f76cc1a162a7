"""How long a test waits before it gives up: every fixed deadline of the tests is `scaled(seconds)`, the seconds
an idle machine needs with room to spare, times FACTOR, read here once per session.

FACTOR = max(1, $DIMEE_TEST_TIME_FACTOR, load per core at session start (at most AUTO_MAX)).

A deadline only bounds a wait on a condition: a passing test ends when the condition holds, so a larger deadline
costs a passing run nothing and only delays the report of a failing one. Scaling by the load already on the
machine when the session starts (other builds, CPU burners) is therefore free, and it is the failure seen: group
joins and role start-ups that took past fixed deadlines on a loaded machine. The variable covers what the load
average cannot see in advance (load that starts later, a slow disk or VM) and only ever raises the factor.
"""

from __future__ import annotations

import os

ENV = "DIMEE_TEST_TIME_FACTOR"
AUTO_MAX = 4.0  # beyond this the load is a spike or a machine someone should set the variable for, knowingly


def _given() -> float:
    text = os.environ.get(ENV, "").strip()
    try:
        return float(text) if text else 1.0
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: expected a number, e.g. 2") from None


def _load_per_core() -> float:
    """The 1-minute load average over the cores it is counted on (both are the host's, also in a container)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):  # no load average on this platform
        return 0.0


GIVEN = _given()
LOAD = _load_per_core()
FACTOR = max(1.0, GIVEN, min(LOAD, AUTO_MAX))


def scaled(seconds: float) -> float:
    """`seconds` (enough on an idle machine) stretched for this machine's load: the session's factor, or the load
    now if it rose since the session started (a deadline computed where its wait begins sees it)."""
    return seconds * max(FACTOR, min(_load_per_core(), AUTO_MAX))


def describe() -> str:
    """For pytest's header: the factor and where it came from."""
    return f"test deadlines x{FACTOR:.2f} ({ENV}={GIVEN:g}, load per core at start {LOAD:.2f})"
