"""Small calibration sets: how often the deployed default misses the budget on test, and what the guarantee costs.

From a calibrated work folder and the test split's recorded exits (`dimee evaluate --out OUT` writes them to
OUT/records/test.safetensors), draw stratified subsets of the recorded calibration exits, calibrate on each (no
model runs: the exits are recorded), and score on the whole test split:

- **shown**: the default as `dimee study` picks it, the cheapest policy whose loss against the full model is
  shown within the budget at 95% confidence (a tuned cascade that passed its test, or Cloud-only);
- **point estimate**: the rule before the guarantee, the cheapest candidate whose *calibration* accuracy is
  within the budget, over the same tuned-cascade settings and every α* policy (the learned router aside).

    python -m benchmarks.small_calibration --workdir artifacts/demo --test-exits runs/demo/records/test.safetensors
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dimee.common.workdir import Workdir
from dimee.data.splits import stratified_subset
from dimee.method.calibration import Calibration, calibrate
from dimee.method.cascade_tuning import family
from dimee.method.exits import ExitRecords
from dimee.method.routing_policy import POLICIES
from dimee.method.thresholds import TierThresholds
from dimee.offline.evaluation.baselines import MethodResult
from dimee.offline.evaluation.policies import PolicyInputs, choose_default, offline_policy

TUNED = ("Tuned-cascade", "Tuned-edge-cascade")


@dataclass
class Scored:
    name: str
    drop: float  # on test, accuracy points below the full model
    cost: float  # mean on test


def subset(records: ExitRecords, rows: np.ndarray) -> ExitRecords:
    tokens = None if records.tokens is None else records.tokens[rows]
    return ExitRecords(records.probs[rows], records.embeddings[rows], records.labels[rows], tokens)


def drop_on(records: ExitRecords, result: MethodResult) -> float:
    full = float((records.probs[:, -1].argmax(-1) == records.labels).mean())
    return 100 * (full - result.accuracy(records.labels))


def candidates(cal: Calibration) -> dict[str, tuple[str, Calibration]]:
    """Every deployable policy but the learned ones, and each tuned cascade at every λ of its family."""
    out = {name: (name, cal) for name, p in POLICIES.items() if p.router != "learned" and name not in TUNED}
    for name in TUNED:
        start = POLICIES[name].router
        index = cal.plan.index(start)
        for lam in family(cal.num_labels):
            exits = [lam if index <= i < len(cal.plan) - 1 else None for i in range(len(cal.plan))]
            setting = TierThresholds(exit=exits, keep=[None] * len(cal.plan))
            out[f"{name}@{lam:g}"] = (name, cal.model_copy(update={"cascades": {**cal.cascades, start: setting}}))
    return out


def one_draw(cal_exits: ExitRecords, test: ExitRecords, base: Calibration, samples: int,
             seed: int) -> tuple[Scored, Scored]:
    rows = stratified_subset(cal_exits.labels, samples, seed)
    small = subset(cal_exits, rows)
    cal = calibrate(small, base.config().model_copy(update={"calibration_samples": samples,
                                                            "calibration_seed": seed}))
    served = {name: offline_policy(POLICIES[name])(PolicyInputs(small), cal) for name in POLICIES
              if POLICIES[name].router != "learned"}
    shown = choose_default(served, cal).name
    on_test = offline_policy(POLICIES[shown])(PolicyInputs(test), cal)
    budget = base.config().max_drop
    lucky = {key: (name, c, offline_policy(POLICIES[name])(PolicyInputs(small), c))
             for key, (name, c) in candidates(cal).items()}
    fits = {k: v for k, v in lucky.items() if drop_on(small, v[2]) <= budget + 1e-9}
    key = min(fits, key=lambda k: fits[k][2].mean_cost()) if fits else "Cloud-only"
    name, c, _ = lucky[key]
    point = offline_policy(POLICIES[name])(PolicyInputs(test), c)
    return (Scored(shown, drop_on(test, on_test), on_test.mean_cost()),
            Scored(key, drop_on(test, point), point.mean_cost()))


def summary(rows: list[Scored], budget: float) -> dict:
    drops, costs = np.array([r.drop for r in rows]), np.array([r.cost for r in rows])
    return {"within_budget": float((drops <= budget + 1e-9).mean()), "mean_drop": float(drops.mean()),
            "worst_drop": float(drops.max()), "mean_cost": float(costs.mean()),
            "chosen": {n: [r.name for r in rows].count(n) for n in sorted({r.name for r in rows})}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="A calibrated work folder.")
    parser.add_argument("--test-exits", type=Path, required=True, help="The test split's recorded exits.")
    parser.add_argument("--samples", type=int, default=150, help="Calibration samples per draw.")
    parser.add_argument("--draws", type=int, default=25, help="Stratified draws (seeds 0 … draws - 1).")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here too.")
    args = parser.parse_args()
    work = Workdir(args.workdir)
    base, cal_exits = Calibration.load(work.calibration), ExitRecords.load(work.exits("calibration"))
    test = ExitRecords.load(args.test_exits)
    budget = base.config().max_drop
    shown, point = [], []
    for seed in tqdm(range(args.draws), desc=f"{args.draws} draws of {args.samples} calibration samples"):
        s, p = one_draw(cal_exits, test, base, args.samples, seed)
        shown.append(s)
        point.append(p)
    result = {"samples": args.samples, "draws": args.draws, "budget_points": budget,
              "shown": summary(shown, budget), "point_estimate": summary(point, budget)}
    cloud = base.cost_model.cloud_only(test.probs.shape[1])
    print(f"{args.draws} draws of {args.samples} calibration samples, budget {budget:g} pt, test {len(test.labels)}:")
    print("| rule | within budget on test | mean drop, pt | worst drop, pt | mean cost | × cloud-only | chosen |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, key in (("shown at 95%", "shown"), ("point estimate", "point_estimate")):
        r = result[key]
        chosen = ", ".join(f"{n} ×{c}" for n, c in r["chosen"].items())
        print(f"| {label} | {100 * r['within_budget']:.0f}% | {r['mean_drop']:+.2f} | {r['worst_drop']:+.2f} | "
              f"{r['mean_cost']:.3f} | {r['mean_cost'] / cloud:.2f} | {chosen} |")
    print(f"the guarantee costs {result['shown']['mean_cost'] / result['point_estimate']['mean_cost']:.2f}× "
          "the point estimate's mean cost")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
