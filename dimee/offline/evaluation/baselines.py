"""The paper's baselines and DIMEE (docs/method.md section 2) as functions of recorded exits → per-sample
prediction, tier and cost. `MethodResult` is the row type every evaluated policy produces."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dimee.method import arithmetic
from dimee.method.calibration import Calibration
from dimee.method.exits import ExitRecords
from dimee.method.tiers import TIERS, Tier

MOBILE, CLOUD = TIERS.index(Tier.MOBILE), TIERS.index(Tier.CLOUD)


@dataclass
class MethodResult:
    name: str
    pred: np.ndarray
    tier: np.ndarray  # index into TIERS: 0 mobile, 1 edge, 2 cloud
    cost: np.ndarray
    routed_pool: np.ndarray | None = None  # for routers: the pool chosen before any layer ran
    hops: np.ndarray | None = None  # tiers visited per sample, for policies that escalate
    exit_layer: np.ndarray | None = None  # the layer whose head answered, where the row knows it

    def accuracy(self, labels: np.ndarray) -> float:
        return float((self.pred == labels).mean())

    def mean_cost(self) -> float:
        return float(self.cost.mean())

    def tier_shares(self) -> dict[str, float]:
        return {tier.value: float((self.tier == i).mean()) for i, tier in enumerate(TIERS)}


def served_result(name: str, probs: np.ndarray, pools: np.ndarray, cal: Calibration,
                  routed: bool = False) -> MethodResult:
    plan = cal.plan
    served = arithmetic.serve(probs, pools, plan, cal.alpha, cal.cost_model)
    return MethodResult(name, served.pred, plan.tier_indices(pools), served.cost, pools if routed else None)


def cloud_only(test: ExitRecords, cal: Calibration) -> MethodResult:
    num_layers = test.probs.shape[1]
    cost = cal.cost_model.run(Tier.CLOUD, np.full(len(test.labels), num_layers))
    return MethodResult("Cloud-only", test.probs[:, -1].argmax(-1), np.full(len(test.labels), TIERS.index(Tier.CLOUD)),
                        cost)


def single_tier(name: str, tier: Tier, test: ExitRecords, cal: Calibration) -> MethodResult:
    index = cal.plan.index(tier)
    return served_result(name, test.probs, np.full(len(test.labels), index), cal)


def random_tiers(test: ExitRecords, cal: Calibration, seed: int, matched: bool) -> MethodResult:
    rng = np.random.default_rng(seed)
    k = len(cal.plan)
    shares = np.asarray(cal.pool_sizes, dtype=float) / sum(cal.pool_sizes) if matched else np.full(k, 1.0 / k)
    pools = rng.choice(k, size=len(test.labels), p=shares)
    return served_result("Random-matched" if matched else "Random", test.probs, pools, cal, routed=True)


def early_exit(test: ExitRecords, cal_exits: ExitRecords, cal: Calibration) -> MethodResult:
    """The whole model on the mobile with early exit; α = the grid value most accurate on calibration."""
    grid = np.asarray(cal.grid)
    accuracies = []
    for alpha in grid:
        tau = arithmetic.exit_layers(cal_exits.probs, alpha)
        pred = cal_exits.probs[np.arange(len(tau)), tau - 1].argmax(-1)
        accuracies.append(float((pred == cal_exits.labels).mean()))
    alpha = float(grid[int(np.argmax(accuracies))])  # argmax takes the first: the smaller, cheaper α
    tau = arithmetic.exit_layers(test.probs, alpha)
    pred = test.probs[np.arange(len(tau)), tau - 1].argmax(-1)
    cost = cal.cost_model.run(Tier.MOBILE, tau)
    return MethodResult("Early-Exit", pred, np.full(len(tau), TIERS.index(Tier.MOBILE)), cost)


def ucb1(num_arms: int, rewards_of: Callable[[int, int], float], steps: int) -> list[int]:
    """UCB1 over a stream: play each arm once, then argmax of mean + sqrt(2 ln t / n)."""
    totals, plays, chosen = np.zeros(num_arms), np.zeros(num_arms), []
    for t in range(steps):
        if t < num_arms:
            arm = t
        else:
            arm = int(np.argmax(totals / plays + np.sqrt(2.0 * math.log(t) / plays)))
        totals[arm] += rewards_of(t, arm)
        plays[arm] += 1
        chosen.append(arm)
    return chosen


def adaee(test: ExitRecords, cal: Calibration) -> MethodResult:
    """Two tiers (mobile exit at m, cloud); UCB1 learns α online over the test stream."""
    cost, m = cal.cost_model, cal.plan.cap(Tier.MOBILE)
    conf = test.probs.max(-1)
    grid = np.asarray(cal.grid)
    n = len(test.labels)
    pred, tier, costs = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n)
    offload, on_mobile = cost.entry(Tier.CLOUD), cost.run(Tier.MOBILE, m)

    def play(t: int, arm: int) -> float:
        conf_m, conf_l = conf[t, m - 1], conf[t, -1]
        if conf_m >= grid[arm]:
            pred[t], tier[t], costs[t] = test.probs[t, m - 1].argmax(), MOBILE, on_mobile
            return 0.0
        pred[t], tier[t], costs[t] = test.probs[t, -1].argmax(), CLOUD, on_mobile + offload
        return max(conf_l - conf_m, 0.0) - cost.beta * offload

    ucb1(len(grid), play, n)
    return MethodResult("AdaEE", pred, tier, costs)


def i_splitee(test: ExitRecords, cal: Calibration) -> MethodResult:
    """UCB1 over the split layer k in 1..L-1 at α*; offloaded samples finish in the cloud at layer L."""
    cost, alpha = cal.cost_model, cal.alpha
    conf = test.probs.max(-1)
    num_layers = test.probs.shape[1]
    n = len(test.labels)
    pred, tier, costs = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n)
    offload = cost.entry(Tier.CLOUD)

    def play(t: int, arm: int) -> float:
        k = arm + 1
        on_mobile = cost.run(Tier.MOBILE, k)
        if conf[t, k - 1] >= alpha:
            pred[t], tier[t], costs[t] = test.probs[t, k - 1].argmax(), MOBILE, on_mobile
            return float(conf[t, k - 1] - cost.beta * cost.per_layer(Tier.MOBILE) * k)
        pred[t], tier[t], costs[t] = test.probs[t, -1].argmax(), CLOUD, on_mobile + offload
        return float(conf[t, -1] - cost.beta * (on_mobile + offload))

    ucb1(num_layers - 1, play, n)
    return MethodResult("I-SplitEE", pred, tier, costs)


def dimee(test: ExitRecords, cal: Calibration, adaptive: bool) -> MethodResult:
    embeddings = test.embeddings
    pools = arithmetic.route(embeddings, cal.centroid_arrays(), cal.pool_sizes, cal.distance, adaptive)
    return served_result("DIMEE-D" if adaptive else "DIMEE-F", test.probs, pools, cal, routed=True)


def oracle(test: ExitRecords, cal: Calibration) -> MethodResult:
    pools = arithmetic.true_pools(test.probs, cal.alpha, cal.plan)
    return served_result("Oracle", test.probs, pools, cal, routed=True)


def all_methods(test: ExitRecords, cal_exits: ExitRecords, cal: Calibration, seed: int = 0) -> list[MethodResult]:
    return [
        cloud_only(test, cal),
        single_tier("Mobile-only", Tier.MOBILE, test, cal),
        single_tier("Edge-only", Tier.EDGE, test, cal),
        random_tiers(test, cal, seed, matched=False),
        random_tiers(test, cal, seed, matched=True),
        early_exit(test, cal_exits, cal),
        adaee(test, cal),
        i_splitee(test, cal),
        dimee(test, cal, adaptive=False),
        dimee(test, cal, adaptive=True),
        oracle(test, cal),
    ]


def confusion(result: MethodResult, test: ExitRecords, cal: Calibration) -> list[list[int]]:
    """rows: true pool at α*, columns: routed pool."""
    assert result.routed_pool is not None
    truth = arithmetic.true_pools(test.probs, cal.alpha, cal.plan)
    k = len(cal.plan)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (truth, result.routed_pool), 1)
    return matrix.tolist()
