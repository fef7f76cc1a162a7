"""What the model allows at best: the cheapest way to answer each sample (oracles that see the answers), and
how sure an accuracy difference to the full model is (a paired bootstrap).

- Agreement floor: each sample on the cheapest tier whose answer, served there at the calibrated thresholds,
  equals the full model's (the full model in the cloud where no tier's does). It keeps exactly cloud-only
  accuracy; no policy keeping that accuracy on every sample can be cheaper with the same serving rule.
- Agreement floor, any layer: the same with the freedom to stop at any layer of any tier that holds it.
- Correct floor, any layer: the cheapest layer whose answer is right (the cheapest layer at all when none is).
"""

from __future__ import annotations

import numpy as np

from dimee.method import arithmetic
from dimee.method.calibration import Calibration
from dimee.method.exits import ExitRecords
from dimee.method.tiers import TIERS, Tier
from dimee.offline.evaluation.baselines import MethodResult

AGREEMENT = "Floor: agreement"
AGREEMENT_ANY = "Floor: agreement, any layer"
CORRECT_ANY = "Floor: correct, any layer"


def _full_model(test: ExitRecords, cal: Calibration) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, num_layers = len(test.labels), test.probs.shape[1]
    return (test.probs[:, -1].argmax(-1), np.full(n, TIERS.index(Tier.CLOUD)),
            np.full(n, float(cal.cost_model.run(Tier.CLOUD, num_layers))))


def agreement_floor(test: ExitRecords, cal: Calibration) -> MethodResult:
    plan, full = cal.plan, test.probs[:, -1].argmax(-1)
    pred, tier, cost = _full_model(test, cal)
    for pool in range(len(plan)):
        served = arithmetic.serve(test.probs, np.full(len(full), pool), plan, cal.alpha, cal.cost_model)
        better = (served.pred == full) & (served.cost < cost)
        pred[better], cost[better] = served.pred[better], served.cost[better]
        tier[better] = TIERS.index(plan[pool][0])
    return MethodResult(AGREEMENT, pred, tier, cost)


def _cheapest_layer(test: ExitRecords, cal: Calibration, wanted: np.ndarray, name: str) -> MethodResult:
    """The cheapest (tier, layer) whose answer is in `wanted` (N, L); where none is, the cheapest at all."""
    plan, n, num_layers = cal.plan, len(test.labels), test.probs.shape[1]
    layer_no = np.arange(1, num_layers + 1)
    # price[t, l]: stopping at layer l on tier t (inf beyond its cap)
    price = np.array([np.where(layer_no <= cap, cal.cost_model.run(t, layer_no), np.inf) for t, cap in plan])
    cheapest_tier, cheapest = price.argmin(0), price.min(0)  # per layer
    options = np.where(wanted, cheapest[None, :], np.inf)
    fallback = ~wanted.any(1)
    options[fallback] = cheapest[None, :]
    layer = options.argmin(1)
    rows = np.arange(n)
    tiers = np.array([TIERS.index(plan[int(t)][0]) for t in cheapest_tier[layer]])
    return MethodResult(name, test.probs[rows, layer].argmax(-1), tiers, options[rows, layer])


def agreement_floor_any_layer(test: ExitRecords, cal: Calibration) -> MethodResult:
    said = test.probs.argmax(-1)
    return _cheapest_layer(test, cal, said == said[:, -1:], AGREEMENT_ANY)


def correct_floor_any_layer(test: ExitRecords, cal: Calibration) -> MethodResult:
    return _cheapest_layer(test, cal, test.probs.argmax(-1) == test.labels[:, None], CORRECT_ANY)


def floors(test: ExitRecords, cal: Calibration) -> list[MethodResult]:
    return [agreement_floor(test, cal), agreement_floor_any_layer(test, cal), correct_floor_any_layer(test, cal)]


def paired_bootstrap(correct: list[np.ndarray], reference: np.ndarray, rounds: int = 2000,
                     seed: int = 0) -> list[tuple[float, float]]:
    """For each row of `correct`, the 95% interval of its accuracy minus the reference's, over test sets
    drawn with replacement (the same draws for every row: all answered the same samples)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(reference), size=(rounds, len(reference)))
    intervals = []
    for row in correct:
        means = (row.astype(np.float64) - reference)[draws].mean(1)
        low, high = np.percentile(means, [2.5, 97.5])
        intervals.append((float(low), float(high)))
    return intervals
