"""The centroid store interface. Seeding from calibration.json is always an explicit act (`--reseed`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dimee.calibration import Calibration
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
    def seed(self, calibration: Calibration) -> None:
        """Replace the stored centroids with calibration's (and forget which ids were seen)."""

    def is_seeded(self) -> bool: ...

    def snapshot(self) -> CentroidSnapshot: ...

    def apply(self, updates: list[Update]) -> list[bool]:
        """μ_k ← μ_k + (e − μ_k)/(N_k + 1), N_k ← N_k + 1 for each update whose sample id was not applied
        before (within the seen-marker TTL); returns which were applied."""

    def close(self) -> None: ...


def open_store(url: str, model_id: str, seen_ttl_s: int = 7 * 24 * 3600) -> CentroidStore:
    if url.startswith("memory://"):
        from state.memory import shared_store

        return shared_store(url, model_id)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from state.redis_store import RedisCentroidStore

        return RedisCentroidStore(url, model_id, seen_ttl_s)
    raise DimeeError(f"unknown state store {url!r}: use memory:// or redis://HOST:PORT/DB (rediss:// for TLS)")

