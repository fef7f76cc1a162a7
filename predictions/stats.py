"""Running statistics over predictions: what the tail shows and the demo reports."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from dimee.predictions.answered import Answered

from dimee.method.tiers import TIER_NAMES
from dimee.streaming.messages import Prediction


def percentiles_ms(latencies_s: Iterable[float]) -> tuple[float, float]:
    """p50 and p99 in ms; NaN for none (not numpy's all-NaN warning)."""
    values = list(latencies_s)
    if not values:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(values, [50, 99]) * 1000
    return float(p50), float(p99)


@dataclass
class PredictionStats:
    """Over the distinct samples answered (each id once); `answered`, where its owner counts the records read
    (predictions/answered.py), is shown first."""

    cloud_only_cost: float = 1.0
    answered: Answered | None = None
    count: int = 0
    labelled: int = 0
    correct: int = 0
    total_cost: float = 0.0
    tiers: Counter = field(default_factory=Counter)
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))  # the most recent, bounded
    # Throughput from the predictions' own clocks, so a consumer reading a backlog still reports the
    # pipeline's rate, not its own read rate.
    first_produced: float = float("inf")
    last_finished: float = float("-inf")

    def add(self, prediction: Prediction) -> None:
        self.first_produced = min(self.first_produced, prediction.timings.produced_at)
        self.last_finished = max(self.last_finished, prediction.timings.finished_at)
        self.count += 1
        self.total_cost += prediction.cost.total
        self.tiers[prediction.tier.value] += 1
        if prediction.correct is not None:
            self.labelled += 1
            self.correct += int(prediction.correct)
        self.latencies_s.append(prediction.timings.finished_at - prediction.timings.produced_at)

    def summary(self) -> dict:
        elapsed = self.last_finished - self.first_produced if self.count else 0.0
        mean_cost = self.total_cost / self.count if self.count else float("nan")
        p50, p99 = percentiles_ms(self.latencies_s)
        return {
            **(self.answered.summary() if self.answered is not None else {}),
            "count": self.count,
            "accuracy": self.correct / self.labelled if self.labelled else None,
            "mean_cost": mean_cost,
            "delta_cost": (mean_cost - self.cloud_only_cost) / self.cloud_only_cost,
            "tier_shares": {t: self.tiers[t] / self.count if self.count else 0.0 for t in TIER_NAMES},
            "throughput_per_s": self.count / elapsed if elapsed > 0 else None,
            "latency_p50_ms": p50,
            "latency_p99_ms": p99,
        }

    def line(self) -> str:
        counted = self.answered.text() if self.answered is not None else f"{self.count} predictions"
        if not self.count:  # no mean to show: "cost nan (+nan% vs cloud-only)" said nothing
            return counted
        s = self.summary()
        accuracy = f"{100 * s['accuracy']:.2f}%" if s["accuracy"] is not None else "n/a"
        rate = f"{s['throughput_per_s']:.1f}/s" if s["throughput_per_s"] else "-"
        shares = " ".join(f"{t} {100 * v:.0f}%" for t, v in s["tier_shares"].items())
        return (f"{counted} | {rate} | accuracy {accuracy} | cost {s['mean_cost']:.3f} "
                f"({100 * s['delta_cost']:+.1f}% vs cloud-only) | {shares} | "
                f"latency p50 {s['latency_p50_ms']:.0f} ms p99 {s['latency_p99_ms']:.0f} ms")
