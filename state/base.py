"""The centroid store interface; `state` (the package) opens an implementation by URL. Seeding is always an
explicit act (`dimee seed`, `--reseed`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dimee.common.errors import ServiceUnavailable
from dimee.method.arithmetic import running_mean_step
from dimee.method.control import Control, ControlRule, next_offset

RESTORE_HINT = ("`dimee seed --only-missing` restores what is missing from calibration.json and keeps the adapted "
                "centroids and seen-markers that are still there")


class NotSeeded(ServiceUnavailable):
    """The store answers but holds no centroids (or not all) for this model: never seeded, or lost (a flushed
    Redis, one restarted without persistence, a failover to an empty replica). A service condition, like an
    outage: a router waits for it, committing nothing past it, instead of dead-lettering every sample."""

    service = "centroid store"


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


@dataclass
class Moves:
    """What a batch of updates does to the centroids: the new mean and count of every pool it moves, and
    which updates were applied (a replayed id, a repeat within the batch, or an empty pool: not applied)."""

    means: dict[int, np.ndarray]
    counts: dict[int, int]
    moved_by: dict[int, int]  # pool → how many updates moved it
    applied: list[bool]


def moves(updates: list[Update], means: list[np.ndarray | None], counts: list[int], seen: set[str]) -> Moves:
    """The updates applied in order, each id once, with `dimee.method.arithmetic.running_mean_step`: the one rule both
    stores follow (the Redis store computes it here and writes the result atomically, see redis_store)."""
    new_means: dict[int, np.ndarray] = {}
    new_counts: dict[int, int] = {}
    moved_by: dict[int, int] = {}
    applied, ids = [], set(seen)
    for update in updates:
        start = new_means.get(update.pool, means[update.pool])
        if update.sample_id in ids or start is None:
            applied.append(False)
            continue
        ids.add(update.sample_id)
        count = new_counts.get(update.pool, counts[update.pool])
        new_means[update.pool] = running_mean_step(start, update.embedding.astype(np.float64), count, update.gamma)
        new_counts[update.pool] = count + 1
        moved_by[update.pool] = moved_by.get(update.pool, 0) + 1
        applied.append(True)
    return Moves(new_means, new_counts, moved_by, applied)


@dataclass
class Steps:
    """What a batch of audit outcomes does to the live control: each applied one's control after it."""

    applied: list[bool]
    controls: list[Control]  # one per applied outcome, in order

    @property
    def last(self) -> Control | None:
        return self.controls[-1] if self.controls else None


def control_steps(outcomes: list[tuple[str, bool]], start: Control, rule: ControlRule, seen: set[str]) -> Steps:
    """The outcomes (audit id, disagreed) applied in order with `dimee.method.control.next_offset`, each id once:
    the one rule both stores follow."""
    control, ids, applied, controls = start, set(seen), [], []
    for audit_id, disagreed in outcomes:
        if audit_id in ids:
            applied.append(False)
            continue
        ids.add(audit_id)
        control = Control(offset=next_offset(control.offset, disagreed, rule), version=control.version + 1)
        applied.append(True)
        controls.append(control)
    return Steps(applied, controls)


class CentroidStore(Protocol):
    def seed(self, means: list[np.ndarray | None], counts: list[int]) -> None:
        """Replace the stored centroids (None: an empty pool) and their counts, and forget which ids were
        seen. Callers pass calibration.json's pools: `store.seed(cal.centroid_arrays(), cal.pool_sizes)`."""

    def restore(self, means: list[np.ndarray | None], counts: list[int]) -> int:
        """Seed only what is missing (every pool if the store is empty), keeping the pools and seen-markers that
        are still there; returns how many pools were written."""

    def is_seeded(self) -> bool: ...

    def snapshot(self) -> CentroidSnapshot: ...

    def apply(self, updates: list[Update], read: CentroidSnapshot | None = None) -> list[bool]:
        """μ_k ← μ_k + (e − μ_k)/(N_k + 1), N_k ← N_k + 1 for each update whose sample id was not applied
        before (within the seen-marker TTL); returns which were applied. `read`: a snapshot the caller took
        (a store may start from it instead of reading again; it never trusts it past a change)."""

    def control(self) -> Control:
        """The live threshold offset and its version (offset 0, version 0 until an audit moves it)."""

    def apply_control(self, outcomes: list[tuple[str, bool]], rule: ControlRule) -> Steps:
        """Each audit outcome (id, disagreed) not applied before moves the live offset (`control_steps`),
        atomically with its seen-marker; concurrent controllers never lose a step."""

    def check_not_evicting(self) -> None:
        """Raise unless the store keeps every key it is given (adaptive routing depends on it)."""

    def close(self) -> None: ...
