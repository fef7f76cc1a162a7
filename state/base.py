"""The centroid store interface; `state` (the package) opens an implementation by URL. Seeding is always an
explicit act (`dimee seed`, `--reseed`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dimee.errors import DimeeError


class NotSeeded(DimeeError):
    """The store has no centroids for this model yet."""


@dataclass
class CentroidSnapshot:
    means: list[np.ndarray | None]  # None: an empty pool, never routed to
    counts: list[int]
    versions: list[int]

    @property
    def version(self) -> int:
        return sum(self.versions)


@dataclass(frozen=True)
class Update:
    pool: int
    embedding: np.ndarray
    sample_id: str
    gamma: float = 0.0  # 0: running mean μ + (e − μ)/(N + 1); else exponential moving average μ + γ(e − μ)


class CentroidStore(Protocol):
    def seed(self, means: list[np.ndarray | None], counts: list[int]) -> None:
        """Replace the stored centroids (None: an empty pool) and their counts, and forget which ids were
        seen. Callers pass calibration.json's pools: `store.seed(cal.centroid_arrays(), cal.pool_sizes)`."""

    def is_seeded(self) -> bool: ...

    def snapshot(self) -> CentroidSnapshot: ...

    def apply(self, updates: list[Update]) -> list[bool]:
        """μ_k ← μ_k + (e − μ_k)/(N_k + 1), N_k ← N_k + 1 for each update whose sample id was not applied
        before (within the seen-marker TTL); returns which were applied."""

    def check_not_evicting(self) -> None:
        """Raise unless the store keeps every key it is given (adaptive routing depends on it)."""

    def close(self) -> None: ...
