"""In-memory centroid store with the same update and idempotency rules as the Redis one. The control is kept as
the fields of the Redis hash (strings), read back by the same `read_control`, so both stores read a control the
same way, a malformed one included."""

from __future__ import annotations

import threading

import numpy as np
from dimee.state.base import (
    BadControl,
    CentroidSnapshot,
    NotSeeded,
    Steps,
    Update,
    Verdict,
    control_steps,
    moves,
    read_control,
    write_control,
)

from dimee.method.control import Control, ControlRule, ControlState

_STORES: dict[tuple[str, str], InMemoryCentroidStore] = {}
_LOCK = threading.Lock()


def shared_store(url: str, namespace: str) -> InMemoryCentroidStore:
    """One store per URL and pipeline namespace (`state.base.namespace`) in this process."""
    with _LOCK:
        return _STORES.setdefault((url, namespace), InMemoryCentroidStore())


class InMemoryCentroidStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._means: list[np.ndarray | None] | None = None
        self._counts: list[int] = []
        self._versions: list[int] = []
        self._seen: set[str] = set()
        self._control: dict[str, str] = {}  # the Redis hash's fields; empty: no audit yet
        self._control_seen: set[str] = set()
        self._copies: dict[str, str] = {}  # audit copies made: id → the answer they check

    def seed(self, means: list[np.ndarray | None], counts: list[int]) -> None:
        with self._lock:
            self._means = [None if m is None else np.asarray(m, dtype=np.float64).copy() for m in means]
            self._counts = list(counts)
            self._versions = [0] * len(means)
            self._seen = set()
            self._control, self._control_seen = {}, set()

    def restore(self, means: list[np.ndarray | None], counts: list[int]) -> int:
        with self._lock:
            if self._means is not None:
                return 0  # held whole or not at all here
            self._means = [None if m is None else np.asarray(m, dtype=np.float64).copy() for m in means]
            self._counts, self._versions = list(counts), [0] * len(means)
            return len(means)

    def is_seeded(self) -> bool:
        return self._means is not None

    def snapshot(self) -> CentroidSnapshot:
        with self._lock:
            if self._means is None:
                raise NotSeeded("the in-memory centroid store is empty: seed it from calibration.json (--reseed)")
            return CentroidSnapshot([None if m is None else m.copy() for m in self._means], list(self._counts),
                                    list(self._versions))

    def apply(self, updates: list[Update], read: CentroidSnapshot | None = None) -> list[bool]:
        with self._lock:
            if self._means is None:
                raise NotSeeded("the in-memory centroid store is empty")
            done = moves(updates, self._means, self._counts, self._seen)
            self._seen.update(u.sample_id for u, ok in zip(updates, done.applied, strict=True) if ok)
            for pool, mean in done.means.items():
                self._means[pool], self._counts[pool] = mean, done.counts[pool]
                self._versions[pool] += done.moved_by[pool]
            return done.applied

    def control(self) -> Control:
        return self.control_state().control

    def control_state(self) -> ControlState:
        with self._lock:
            return read_control(self._control)

    def mark_audit_copies(self, copies: dict[str, str]) -> None:
        with self._lock:
            self._copies.update(copies)

    def apply_control(self, verdicts: list[Verdict], rule: ControlRule) -> Steps:
        with self._lock:
            copies = {v.audit_id: self._copies.get(v.audit_id) for v in verdicts}
            steps = control_steps(verdicts, read_control(self._control), rule, copies, self._control_seen)
            for verdict, reason in zip(verdicts, steps.refused, strict=True):
                if reason is None:
                    self._control_seen.add(verdict.audit_id)
                    self._copies.pop(verdict.audit_id, None)
            if steps.controls:
                self._control = write_control(steps.state)
            return steps

    def repair_control(self) -> str | None:
        with self._lock:
            try:
                read_control(self._control)
            except BadControl as exc:
                self._control = {}
                return str(exc)
            return None

    def check_not_evicting(self) -> None:
        pass  # memory is only given back when the process ends

    def close(self) -> None:
        pass
