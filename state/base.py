"""The centroid store interface; `state` (the package) opens an implementation by URL. Seeding is always an
explicit act (`dimee seed`, `--reseed`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import ValidationError

from dimee.common.errors import ServiceUnavailable
from dimee.method.arithmetic import running_mean_step
from dimee.method.control import Control, ControlRule, ControlState, step

RESTORE_HINT = ("`dimee seed --only-missing` restores what is missing from calibration.json and keeps the adapted "
                "centroids and seen-markers that are still there")


def namespace(pipeline: str, state_id: str) -> str:
    """Where one pipeline's state lives: `dimee:{PIPELINE/STATE_ID}`, its topic prefix and its model's state id
    (`Deployment.state_id`), so two pipelines never read, move or seed each other's centroids or offset. The braces
    are a Redis Cluster hash tag: every key of a pipeline is in one slot, and one Lua script may touch any of them."""
    return f"dimee:{{{pipeline}/{state_id}}}"


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


class RefusesWrites(ServiceUnavailable):
    """The store answers and refuses to write for a while (Redis out of memory, a read-only replica after a
    failover): waited for like an outage by whoever must write (the controller, the feedback), never a reason to
    dead-letter; an adaptive router routes on without moving its centroids meanwhile."""

    service = "state store"


class BadControl(ServiceUnavailable):
    """The stored threshold control is not one (a malformed field, a key of another type, an unreadable value).
    Routers serve the calibrated thresholds meanwhile; the controller waits; `dimee seed --only-missing` resets it."""

    service = "threshold control"


CONTROL_FIELDS = ("offset", "version", "anchor")


def read_control(fields: dict) -> ControlState:
    """The stored control (the fields of its hash, as strings or bytes) read strictly: no key, no audit yet; else
    each field a plain decimal (the version an integer) that `ControlState` accepts. BadControl says what is not."""
    if not any(value is not None for value in fields.values()):
        return ControlState()
    text = {name: _text(fields.get(name)) for name in CONTROL_FIELDS}
    missing = [name for name, value in text.items() if value is None]
    if missing:
        raise BadControl(f"the stored threshold control has no {', '.join(missing)}")
    if not text["version"].isdigit() or not text["version"].isascii():
        raise BadControl(f"the stored threshold control's version is not a count: {text['version'][:40]!r}")
    try:
        offset, anchor = float(text["offset"]), float(text["anchor"])
        return ControlState(control=Control(offset=offset, version=int(text["version"])), anchor=anchor)
    except (ValueError, ValidationError) as exc:
        raise BadControl(f"the stored threshold control is not a finite offset in [0, 1]: "
                         f"offset {text['offset'][:40]!r}, anchor {text['anchor'][:40]!r}") from exc


def write_control(state: ControlState) -> dict[str, str]:
    """The fields `read_control` reads back as `state` (repr keeps every float exactly)."""
    return {"offset": repr(state.control.offset), "version": str(state.control.version),
            "anchor": repr(state.anchor)}


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError as exc:
            raise BadControl("the stored threshold control holds bytes that are not text") from exc
    return None if value is None else str(value)


def copy_mark(tier: str, label_pred: int) -> str:
    """What an audit copy records of the answer it asks the full model to check (and its audit must repeat)."""
    return f"{tier}:{label_pred}"


@dataclass(frozen=True)
class Verdict:
    """An audit as the controller offers it: the sample id, the answer it checked (`copy_mark`), and whether the
    full model disagreed with it."""

    audit_id: str
    answer: str
    disagreed: bool


REPLAYED = "audit refused: this id moved the threshold offset already (a replay)"
NO_COPY = ("audit refused: no audit copy of this id was made in this pipeline (never, or longer ago than the "
           "seen-marker TTL)")
OTHER_ANSWER = "audit refused: the answer it checked is not the one the audit copy was made of"
REFUSALS = {REPLAYED: "replayed", NO_COPY: "no-copy", OTHER_ANSWER: "other-answer"}  # reason → metric label


@dataclass
class Steps:
    """What a batch of audits does to the live control: for each, None (applied) or why it was refused; and each
    applied one's control after it."""

    refused: list[str | None]
    controls: list[Control]  # one per applied audit, in order
    state: ControlState  # after the batch

    @property
    def applied(self) -> list[bool]:
        return [reason is None for reason in self.refused]

    @property
    def last(self) -> Control | None:
        return self.controls[-1] if self.controls else None


def control_steps(verdicts: list[Verdict], start: ControlState, rule: ControlRule, copies: dict[str, str | None],
                  seen: set[str]) -> Steps:
    """The audits applied in order with `dimee.method.control.step`: each only if the audit copy it answers was
    recorded (`copies`: id → the answer the copy was made of) and its id moved nothing before (`seen`), once. The one
    rule both stores follow."""
    state, ids, refused, controls = start, set(seen), [], []
    for verdict in verdicts:
        reason = REPLAYED if verdict.audit_id in ids else \
            NO_COPY if copies.get(verdict.audit_id) is None else \
            OTHER_ANSWER if copies[verdict.audit_id] != verdict.answer else None
        refused.append(reason)
        if reason is None:
            ids.add(verdict.audit_id)
            state = step(state, verdict.disagreed, rule)
            controls.append(state.control)
    return Steps(refused, controls, state)


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
        """The live threshold offset and its version (offset 0, version 0 until an audit moves it); BadControl if
        the stored one is not one."""

    def control_state(self) -> ControlState:
        """The live control and where its window of audits began (what `replay` resumes from)."""

    def mark_audit_copies(self, copies: dict[str, str]) -> None:
        """Record that this pipeline made an audit copy of each id (id → `copy_mark` of the answer it checks), for
        the seen-marker TTL: the only audits the controller applies are answers to these, each once."""

    def apply_control(self, verdicts: list[Verdict], rule: ControlRule) -> Steps:
        """Each audit that answers a recorded audit copy and was not applied before moves the live offset
        (`control_steps`), atomically with consuming its copy's record and setting its seen-marker; concurrent
        controllers never lose a step."""

    def repair_control(self) -> str | None:
        """Reset a stored control that is not one to the calibrated thresholds (offset 0, version 0); returns
        what was wrong with it (None: it was fine, and is kept)."""

    def check_not_evicting(self) -> None:
        """Raise unless the store keeps every key it is given (adaptive routing depends on it)."""

    def close(self) -> None: ...
