"""In-memory centroid store with the same update and idempotency rules as the Redis one."""

from __future__ import annotations

import threading

import numpy as np

from dimee.method import running_mean_step
from state.base import CentroidSnapshot, NotSeeded, Update

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

    def seed(self, means: list[np.ndarray | None], counts: list[int]) -> None:
        with self._lock:
            self._means = [None if m is None else np.asarray(m, dtype=np.float64).copy() for m in means]
            self._counts = list(counts)
            self._versions = [0] * len(means)
            self._seen = set()

    def is_seeded(self) -> bool:
        return self._means is not None

    def snapshot(self) -> CentroidSnapshot:
        with self._lock:
            if self._means is None:
                raise NotSeeded("the in-memory centroid store is empty: seed it from calibration.json (--reseed)")
            return CentroidSnapshot([None if m is None else m.copy() for m in self._means], list(self._counts),
                                    list(self._versions))

    def apply(self, updates: list[Update]) -> list[bool]:
        applied = []
        with self._lock:
            if self._means is None:
                raise NotSeeded("the in-memory centroid store is empty")
            for update in updates:
                mean = self._means[update.pool]
                if update.sample_id in self._seen or mean is None:
                    applied.append(False)
                    continue
                self._seen.add(update.sample_id)
                count = self._counts[update.pool]
                self._means[update.pool] = running_mean_step(mean, update.embedding.astype(np.float64), count,
                                                             update.gamma)
                self._counts[update.pool] = count + 1
                self._versions[update.pool] += 1
                applied.append(True)
        return applied

    def check_not_evicting(self) -> None:
        pass  # memory is only given back when the process ends

    def close(self) -> None:
        pass
