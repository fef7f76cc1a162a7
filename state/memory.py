"""In-memory centroid store with the same update and idempotency rules as the Redis one."""

from __future__ import annotations

import threading

import numpy as np
from dimee.state.base import CentroidSnapshot, NotSeeded, Steps, Update, control_steps, moves

from dimee.method.control import Control, ControlRule

_STORES: dict[tuple[str, str], InMemoryCentroidStore] = {}
_LOCK = threading.Lock()


def shared_store(url: str, model_id: str) -> InMemoryCentroidStore:
    with _LOCK:
        return _STORES.setdefault((url, model_id), InMemoryCentroidStore())


class InMemoryCentroidStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._means: list[np.ndarray | None] | None = None
        self._counts: list[int] = []
        self._versions: list[int] = []
        self._seen: set[str] = set()
        self._control, self._control_seen = Control(), set[str]()

    def seed(self, means: list[np.ndarray | None], counts: list[int]) -> None:
        with self._lock:
            self._means = [None if m is None else np.asarray(m, dtype=np.float64).copy() for m in means]
            self._counts = list(counts)
            self._versions = [0] * len(means)
            self._seen = set()
            self._control, self._control_seen = Control(), set()

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
        with self._lock:
            return self._control

    def apply_control(self, outcomes: list[tuple[str, bool]], rule: ControlRule) -> Steps:
        with self._lock:
            steps = control_steps(outcomes, self._control, rule, self._control_seen)
            self._control_seen.update(i for (i, _), ok in zip(outcomes, steps.applied, strict=True) if ok)
            self._control = steps.last or self._control
            return steps

    def check_not_evicting(self) -> None:
        pass  # memory is only given back when the process ends

    def close(self) -> None:
        pass
