"""Drift you can see: per window of routed samples, how far the distance from each sample to its nearest
calibrated centroid has moved from its calibration distribution.

The score is the Kolmogorov-Smirnov distance between the window's values and the calibration's (held in
calibration.json as quantiles, with the sample count): the largest gap between the two cumulative distributions,
0 (the same) to 1 (disjoint). A window is flagged when the score is above the two-sample critical value at 0.1%,
1.95·√((n + m)/(n·m)), so on in-domain data about one window in a thousand is flagged by chance (at 1%, the demo's
three in-domain test streams of 5 windows each raised one false alarm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dimee.streaming import metrics
from dimee.streaming.runtime import log

WINDOW = 500  # samples per drift window
KS_COEFFICIENT = 1.95  # the two-sample Kolmogorov-Smirnov coefficient at α = 0.1%


def ks_distance(values: np.ndarray, quantiles: np.ndarray) -> float:
    """The largest gap between the empirical CDF of `values` and the CDF the reference quantiles describe (linear
    between them)."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    levels = np.linspace(0.0, 1.0, len(quantiles))
    reference = np.interp(values, quantiles, levels, left=0.0, right=1.0)
    n = len(values)
    above, below = np.arange(1, n + 1) / n - reference, reference - np.arange(n) / n
    return float(max(above.max(), below.max()))


@dataclass(frozen=True)
class DriftReading:
    signal: str
    score: float
    critical: float
    window_median: float
    reference_median: float

    @property
    def drifted(self) -> bool:
        return self.score > self.critical


@dataclass
class DriftWatch:
    """One signal's windows: `add` values as they come; each full window is scored, exported and logged."""

    signal: str
    quantiles: np.ndarray
    reference_samples: int
    window: int = WINDOW
    values: list[float] = field(default_factory=list)
    drifted: bool = False

    def add(self, values: list[float]) -> list[DriftReading]:
        readings = []
        self.values += values
        while len(self.values) >= self.window:
            window, self.values = np.array(self.values[: self.window]), self.values[self.window:]
            readings.append(self._score(window))
        return readings

    def _score(self, window: np.ndarray) -> DriftReading:
        n, m = len(window), max(self.reference_samples, 1)
        reference_median = float(np.interp(0.5, np.linspace(0, 1, len(self.quantiles)), self.quantiles))
        critical = KS_COEFFICIENT * math.sqrt((n + m) / (n * m))
        reading = DriftReading(self.signal, ks_distance(window, self.quantiles), critical, float(np.median(window)),
                               reference_median)
        metrics.DRIFT_SCORE.labels(self.signal).set(reading.score)
        metrics.DRIFT_DETECTED.labels(self.signal).set(int(reading.drifted))
        if reading.drifted != self.drifted:
            say = log.warning if reading.drifted else log.info
            say("drift detected" if reading.drifted else "drift over", signal=self.signal,
                score=round(reading.score, 3), critical=round(reading.critical, 3),
                window_median=round(reading.window_median, 4), calibration_median=round(reading.reference_median, 4))
            self.drifted = reading.drifted
        return reading
