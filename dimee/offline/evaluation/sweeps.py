"""Re-calibrate under changed costs, tier sets or layer splits and re-run DIMEE-D and the tuned cascades (their
thresholds re-tuned on calibration at every point): the paper's sweeps and ablation, and the (m, n) split."""

from __future__ import annotations

from dimee.method.calibration import Calibration, calibrate
from dimee.method.exits import ExitRecords
from dimee.method.routing_policy import POLICIES
from dimee.method.tiers import TIER_NAMES, Tier, TierPlan
from dimee.offline.evaluation.baselines import dimee
from dimee.offline.evaluation.policies import PolicyInputs, offline_policy

SWEEP_VALUES = {
    "lambda_m": [0.02, 0.05, 0.1, 0.15, 0.2, 0.3],
    "lambda_e": [0.01, 0.025, 0.05, 0.1, 0.15, 0.2],
    "o_c": [0.1, 0.25, 0.5, 0.75, 1.0, 1.5],
}


def _recalibrated(cal_exits: ExitRecords, cal: Calibration, **changes) -> Calibration:
    plan = changes.pop("plan", cal.plan)
    cost = cal.cost_model.model_copy(update=changes)
    return calibrate(cal_exits, cal.config().model_copy(update={"cost": cost}), plan=plan)


def _tuned(test: ExitRecords, new_cal: Calibration) -> dict[str, dict]:
    """The tuned cascades (by start tier) with the thresholds this calibration tuned, served as deployed."""
    out = {}
    for policy in POLICIES.values():
        if policy.thresholds == "tuned" and policy.router in new_cal.cascades:
            result = offline_policy(policy)(PolicyInputs(test), new_cal)
            out[policy.router] = {"accuracy": result.accuracy(test.labels), "cost": result.mean_cost()}
    return out


def _row(test: ExitRecords, new_cal: Calibration) -> dict:
    result = dimee(test, new_cal, adaptive=True)
    base = new_cal.cost_model.cloud_only(test.probs.shape[1])
    return {"alpha": new_cal.alpha, "accuracy": result.accuracy(test.labels), "cost": result.mean_cost(),
            "delta_cost": (result.mean_cost() - base) / base if base else float("nan"),
            "tier_shares": result.tier_shares(), "tuned_cascades": _tuned(test, new_cal)}


def cost_sweeps(test: ExitRecords, cal_exits: ExitRecords, cal: Calibration) -> dict[str, list[dict]]:
    """Vary λ_m, λ_e and o_c one at a time (α*, pools and centroids re-derived on calibration each time)."""
    out: dict[str, list[dict]] = {}
    for name, values in SWEEP_VALUES.items():
        out[name] = [{"value": v, **_row(test, _recalibrated(cal_exits, cal, **{name: v}))} for v in values]
    return out


def device_ablation(test: ExitRecords, cal_exits: ExitRecords, cal: Calibration) -> list[dict]:
    """DIMEE-D with each subset of devices that ends in the cloud (paper Figure 2)."""
    num_layers = test.probs.shape[1]
    every = TierPlan.default(cal.m, cal.n, num_layers)
    plans = [every, *(every.without(left_out) for left_out in (Tier.EDGE, Tier.MOBILE, Tier.CLOUD))]
    rows = []
    for plan in plans:
        rows.append({"devices": "+".join(plan.names), **_row(test, _recalibrated(cal_exits, cal, plan=plan))})
    cloud_acc = float((test.probs[:, -1].argmax(-1) == test.labels).mean())
    base = cal.cost_model.cloud_only(num_layers)
    rows.append({"devices": Tier.CLOUD.value, "alpha": None, "accuracy": cloud_acc, "cost": base, "delta_cost": 0.0,
                 "tier_shares": {name: float(name == Tier.CLOUD) for name in TIER_NAMES}})
    return rows


def layer_splits(test: ExitRecords, cal_exits: ExitRecords, cal: Calibration) -> list[dict]:
    """Every split 1 ≤ m < n < L of the layers between mobile, edge and cloud, re-calibrated."""
    num_layers = test.probs.shape[1]
    rows = []
    for m in range(1, num_layers - 1):
        for n in range(m + 1, num_layers):
            new_cal = _recalibrated(cal_exits, cal, plan=TierPlan.default(m, n, num_layers))
            rows.append({"m": m, "n": n, **_row(test, new_cal)})
    return rows


def alpha_frontier(test: ExitRecords, cal_exits: ExitRecords, cal: Calibration) -> list[dict]:
    """DIMEE-D at every α of the grid (pools and centroids re-derived at that α): its accuracy-cost curve."""
    rows = []
    for alpha in cal.grid:
        rows.append({"value": alpha, **_row(test, cal.at_alpha(cal_exits.probs, cal_exits.embeddings, alpha))})
    return rows

