"""What the dashboard shows, folded from the stream as it arrives: pure (no broker, no clock of its own), so
the numbers are tested by feeding it messages."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dimee.method.control import Control
from dimee.method.tiers import TIER_NAMES
from dimee.predictions.answered import Answered
from dimee.predictions.seen_ids import RecentIds
from dimee.predictions.stats import PredictionStats, percentiles_ms
from dimee.streaming.audit import AuditTally
from dimee.streaming.messages import Audit, DeadLetter, Prediction
from dimee.streaming.metrics import dead_letter_reason


@dataclass(frozen=True)
class PoolShift:
    """How far one pool's centroid has moved from calibration, and how many streamed samples moved it."""

    pool: int
    tier: str  # the tier the pool's samples start on
    shift: float | None  # L2 distance to the calibrated centroid; None for a pool empty on either side
    adapted: int  # samples averaged in since calibration (the store's count minus the calibrated pool size)


def centroid_shifts(current: Sequence[np.ndarray | None], counts: Sequence[int],
                    calibrated: Sequence[np.ndarray | None], pool_sizes: Sequence[int],
                    tiers: Sequence[str]) -> list[PoolShift]:
    """The distance the router's dimee_centroid_shift gauge reports, computed from the store's centroids."""
    shifts = []
    for pool, (now, then) in enumerate(zip(current, calibrated, strict=True)):
        shift = None if now is None or then is None else float(np.linalg.norm(np.asarray(now) - np.asarray(then)))
        shifts.append(PoolShift(pool, tiers[pool], shift, max(0, counts[pool] - pool_sizes[pool])))
    return shifts


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: a number not yet known is null on the page."""
    return None if value is None or not math.isfinite(value) else float(value)


# The latency card's window: the predictions finished in the last minute, by the pipeline's clock. Over the whole
# history it stayed at a cleared backlog's minute-long waits long after the stream was served in milliseconds.
LATENCY_WINDOW_S = 60.0
# The charts' points the server keeps for a page that opens (one a second: the last ten minutes).
HISTORY_POINTS = 600
CHART_FIELDS = ("at", "tier_shares", "mean_cost", "cloud_only_cost", "latency_p50_ms", "latency_p99_ms")


class LiveView:
    """Every prediction record read (counted once, repeats as such: predictions/answered.py), running totals over
    the distinct samples answered and the dead letters, and rolling windows of every record for the current
    throughput and latency."""

    def __init__(self, cloud_only_cost: float = 1.0, window_s: float = 10.0, remember: int = 1_000_000,
                 latency_window_s: float = LATENCY_WINDOW_S) -> None:
        self.answered = Answered(RecentIds(remember))
        self.stats = PredictionStats(cloud_only_cost=cloud_only_cost, answered=self.answered)
        self.window_s, self.latency_window_s = window_s, latency_window_s
        # (finish time, latency) of the latest predictions: the windows are by the pipeline's clock, not by when
        # the page read them, so catching up on a backlog does not look like a burst
        self.finished: deque[tuple[float, float]] = deque(maxlen=100_000)
        self.paths: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.unreadable = 0
        self.shifts: list[PoolShift] | None = None  # None: no adaptive state to show (no workdir, no store)
        self.centroid_note = "no centroid store"
        self.audits = AuditTally()
        self.audited: set[str] = set()
        self.control: Control | None = None  # the live threshold offset, where a store is read

    def add_prediction(self, prediction: Prediction) -> bool:
        """Fold one prediction in. Throughput and latency count every record, a repeat too (the pipeline did
        answer it again: a produce repeated while the page was open showed 0/s and no latency); accuracy, cost,
        tier shares and paths count each sample once."""
        timings = prediction.timings
        self.finished.append((timings.finished_at, timings.finished_at - timings.produced_at))
        if not self.answered.fold([prediction]):
            return False
        self.stats.add(prediction)
        if len(prediction.path) > 1:  # passed up at least once: the path is the escalation
            self.paths[" → ".join(tier.value for tier in prediction.path)] += 1
        return True

    def add_dead_letter(self, letter: DeadLetter) -> None:
        self.dead_letters[f"{letter.stage}: {dead_letter_reason(letter.error)}"] += 1

    def add_audit(self, audit: Audit) -> None:
        """Fold one audit in, each sample id once."""
        if audit.id not in self.audited:
            self.audited.add(audit.id)
            self.audits.add(audit)

    def set_centroids(self, shifts: list[PoolShift] | None, note: str = "") -> None:
        self.shifts, self.centroid_note = shifts, note

    def throughput(self, now: float) -> float:
        """Predictions finished in the last `window_s` seconds, per second."""
        start = now - self.window_s
        return sum(1 for t, _ in self.finished if start < t <= now) / self.window_s

    def latency_ms(self, now: float) -> tuple[float, float]:
        """p50 and p99 of the predictions finished in the last `latency_window_s` seconds (NaN for none)."""
        start = now - self.latency_window_s
        return percentiles_ms(latency for t, latency in self.finished if start < t <= now)

    def snapshot(self, now: float) -> dict:
        """Everything the page shows, as JSON-ready values (null where not known yet)."""
        s = self.stats.summary()
        cloud = self.stats.cloud_only_cost
        p50, p99 = self.latency_ms(now)
        return {
            "at": now,
            "answered": self.answered.total,
            "repeats": self.answered.repeats,
            "distinct": self.answered.distinct,
            "answered_text": self.answered.text(),
            "throughput_per_s": self.throughput(now),
            "throughput_overall_per_s": _finite(s["throughput_per_s"]),
            "tier_shares": {tier: s["tier_shares"][tier] for tier in TIER_NAMES},
            "tier_counts": {tier: self.stats.tiers[tier] for tier in TIER_NAMES},
            "mean_cost": _finite(s["mean_cost"]),
            "cloud_only_cost": cloud,
            "cost_vs_cloud": _finite(s["mean_cost"] / cloud) if s["count"] else None,
            "accuracy": s["accuracy"],
            "labelled": self.stats.labelled,
            "latency_p50_ms": _finite(p50),
            "latency_p99_ms": _finite(p99),
            "latency_window_s": self.latency_window_s,
            "escalations": sum(self.paths.values()),
            "escalation_paths": dict(self.paths.most_common()),
            "dead_letters": sum(self.dead_letters.values()),
            "dead_letter_reasons": dict(self.dead_letters.most_common()),
            "unreadable": self.unreadable,
            "centroids": None if self.shifts is None else [
                {"pool": p.pool, "tier": p.tier, "shift": p.shift, "adapted": p.adapted} for p in self.shifts],
            "centroid_note": self.centroid_note,
            "audits": self.audits.summary(),
            "audit_cost": self.audits.cost,
            "threshold_offset": None if self.control is None else self.control.offset,
            "threshold_version": None if self.control is None else self.control.version,
        }


class ChartHistory:
    """The charts' latest points (a bounded ring), so a page that opens draws the recent past at once instead
    of starting empty. Kept by the server, one point per snapshot interval."""

    def __init__(self, points: int = HISTORY_POINTS) -> None:
        self.points: deque[dict] = deque(maxlen=points)

    def add(self, snapshot: dict) -> None:
        self.points.append({name: snapshot[name] for name in CHART_FIELDS})

    def served(self) -> dict:
        """What /history serves: the points, oldest first, and how many a page keeps."""
        return {"keep": self.points.maxlen, "points": list(self.points)}
