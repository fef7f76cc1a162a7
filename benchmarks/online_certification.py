"""Audits that earn, simulated on recorded exits: how soon a stream certifies a setting cheaper than Cloud-only, and
what it costs, when every audit carries every exit's answer (issue 29 item 3; dimee.method.anytime).

The pool is a calibrated work folder's recorded calibration exits and the test split's (distinct samples; none is
replayed). Per order (a seed): `--start` labelled samples drawn from the calibration split start the evidence
(0 for a label-free start), and every other sample of the pool arrives once, in random order. The Tuned-edge-
cascade's family (λ from the top) is bet on in a fixed sequence (`Bets`, δ = 5%, the calibration's budget). At
every sample the served setting is the cheapest certified one by the running mean cost seen on the evidence (its
audits' expected share included), if that is below Cloud-only's by two standard errors, else Cloud-only. Evidence:

- while Cloud-only is served, every sample: the cloud runs every exit anyway, so what each λ would have answered
  is known for free; without a label the observation is whether λ's answer differs from the full model's (an
  upper bound on its loss), with one (an audit whose label came back) whether λ loses where the full model is
  right;
- while a cascade is served, a uniform `--audit-rate` share of samples only (the shadow costs a cloud run where
  the cascade answered below the cloud; a sample it sent up already has every exit).

Labels come back for audited samples in the labelled run; never in the label-free one. Every 500-sample window
of the stream is scored against the full model on its labels (what the budget promises).

    python -m benchmarks.online_certification --workdir artifacts/demo --test-exits runs/demo/records/test.safetensors
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dimee.common.workdir import Workdir
from dimee.data.splits import stratified_subset
from dimee.method.anytime import Bets
from dimee.method.calibration import Calibration
from dimee.method.cascade_tuning import Recorded, _serve, family
from dimee.method.certification import RISK
from dimee.method.exits import ExitRecords
from dimee.method.tiers import Tier

WINDOW = 500


@dataclass
class Pool:
    """Every λ's per-sample outcome on the pool, and the full model's."""

    lambdas: list[float]
    correct: np.ndarray  # (K, N) λ's answer is right
    agrees: np.ndarray  # (K, N) λ's answer is the full model's
    below: np.ndarray  # (K, N) answered below the cloud
    cost: np.ndarray  # (K, N)
    full_correct: np.ndarray  # (N,)
    cloud_cost: float


def pool_of(cal: Calibration, records: ExitRecords) -> Pool:
    data = Recorded.of(records.probs, records.labels, records.hidden_kb())
    lambdas = family(cal.num_labels)
    start = cal.plan.index(Tier.EDGE)
    outcomes = [_serve(data, cal.plan, cal.cost_model, start, lam) for lam in lambdas]
    return Pool(lambdas, np.array([o.correct for o in outcomes]), np.array([o.agrees for o in outcomes]),
                np.array([o.below for o in outcomes]), np.array([o.cost for o in outcomes]),
                data.correct[:, -1], float(cal.cost_model.cloud_only(cal.num_layers)))


@dataclass
class Run:
    first_cheaper: int | None  # stream position (1-based) where a setting cheaper than Cloud-only was first served
    mean_cost: float  # over the stream, audits included
    windows_within: int
    windows: int
    final_lambda: float | None


@dataclass(frozen=True)
class Rules:
    budget: float  # a share
    audit_rate: float
    labelled: bool  # audits' labels come back


def one_order(pool: Pool, start: np.ndarray, stream: np.ndarray, rules: Rules, rng: np.random.Generator) -> Run:
    k, budget, audit_rate, labelled = len(pool.lambdas), rules.budget, rules.audit_rate, rules.labelled
    bets = Bets(k, budget, RISK)
    cost_seen, cost_count = np.zeros(k), 0
    losses = pool.full_correct[None, :] & ~pool.correct  # (K, N): λ loses where the full model is right

    # What serving λ costs a sample, its audit's expected share included: a setting is served only if this is
    # below Cloud-only's, so the stream never pays more than the full model would.
    with_audits = pool.cost + audit_rate * pool.cloud_cost * pool.below

    squares = np.zeros(k)

    def observe(i: int, label_known: bool) -> None:
        nonlocal cost_seen, cost_count, squares
        bets.observe(losses[:, i] if label_known else ~pool.agrees[:, i])
        cost_seen, cost_count = cost_seen + with_audits[:, i], cost_count + 1
        squares = squares + with_audits[:, i] ** 2

    for i in start:
        observe(int(i), label_known=True)
    served_correct, spent, first, served = [], 0.0, None, None
    for position, i in enumerate(stream, 1):
        certified = bets.certified()
        served = None
        if certified and cost_count > 1:
            mean = cost_seen[:certified] / cost_count
            spread = np.sqrt(np.maximum(squares[:certified] / cost_count - mean**2, 0.0) / cost_count)
            cheapest = int(np.argmin(mean))
            # cheaper than Cloud-only by two standard errors: a setting about as dear is not worth the risk
            served = cheapest if mean[cheapest] + 2 * spread[cheapest] < pool.cloud_cost else None
        audited = rng.random() < audit_rate
        if served is None:
            spent += pool.cloud_cost
            served_correct.append(pool.full_correct[i])
            observe(int(i), label_known=labelled and audited)
            continue
        first = first or position
        spent += pool.cost[served, i]
        served_correct.append(pool.correct[served, i])
        if audited:
            spent += pool.cloud_cost if pool.below[served, i] else 0.0
            observe(int(i), label_known=labelled)
    drops = [(pool.full_correct[stream[s:s + WINDOW]].sum() - sum(served_correct[s:s + WINDOW])) / WINDOW
             for s in range(0, len(stream) - WINDOW + 1, WINDOW)]
    return Run(first, float(spent / len(stream)), int(sum(d <= budget for d in drops)), len(drops),
               None if served is None else float(pool.lambdas[served]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="A calibrated work folder.")
    parser.add_argument("--test-exits", type=Path, required=True, help="The test split's recorded exits.")
    parser.add_argument("--start", type=int, default=150, help="Labelled calibration samples to start from.")
    parser.add_argument("--orders", type=int, default=20, help="Random orders (seeds 0 … orders - 1).")
    parser.add_argument("--audit-rate", type=float, default=0.05, help="Uniform audit share of all samples.")
    parser.add_argument("--out", type=Path, help="Write every run as JSON here too.")
    args = parser.parse_args()
    work = Workdir(args.workdir)
    cal = Calibration.load(work.calibration)
    cal_exits, test = ExitRecords.load(work.exits("calibration")), ExitRecords.load(args.test_exits)
    records = ExitRecords(np.concatenate([cal_exits.probs, test.probs]),
                          np.concatenate([cal_exits.embeddings, test.embeddings]),
                          np.concatenate([cal_exits.labels, test.labels]),
                          None if cal_exits.tokens is None or test.tokens is None
                          else np.concatenate([cal_exits.tokens, test.tokens]))
    pool, budget = pool_of(cal, records), cal.max_drop / 100
    runs: dict[str, list[Run]] = {"labelled start": [], "label-free start": []}
    for seed in tqdm(range(args.orders), desc="orders", unit="order"):
        start = stratified_subset(cal_exits.labels, args.start, seed)
        rest = np.setdiff1d(np.arange(len(records.labels)), start)
        stream = np.random.default_rng(seed).permutation(rest)
        runs["labelled start"].append(one_order(pool, start, stream, Rules(budget, args.audit_rate, True),
                                                np.random.default_rng(1000 + seed)))
        runs["label-free start"].append(one_order(pool, np.array([], dtype=np.int64), stream,
                                                  Rules(budget, args.audit_rate, False),
                                                  np.random.default_rng(1000 + seed)))
    print(f"{args.orders} orders of {len(records.labels) - args.start} distinct samples; budget {cal.max_drop:g} pt "
          f"at 95%; audits {100 * args.audit_rate:g}% of samples while a cascade is served; Cloud-only costs "
          f"{pool.cloud_cost:.3f}")
    print("| start | cheaper than Cloud-only first served at (median / worst) | mean cost (mean / worst) | "
          "orders with every 500-sample window within budget | windows within budget | final λ (median) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, found in runs.items():
        firsts = [r.first_cheaper for r in found]
        never = sum(f is None for f in firsts)
        shown = [f for f in firsts if f is not None]
        first = f"{int(np.median(shown))} / {max(shown)}" if shown else "never"
        first += f" ({never} never)" if never and shown else ""
        costs = [r.mean_cost for r in found]
        within = sum(r.windows_within == r.windows for r in found)
        windows = sum(r.windows_within for r in found), sum(r.windows for r in found)
        finals = [r.final_lambda for r in found if r.final_lambda is not None]
        final = f"{np.median(finals):.4g}" if finals else "Cloud-only"
        print(f"| {name} | {first} | {np.mean(costs):.3f} / {max(costs):.3f} | {within} of {len(found)} | "
              f"{windows[0]} of {windows[1]} | {final} |")
    if args.out:
        args.out.write_text(json.dumps({name: [asdict(r) for r in found] for name, found in runs.items()}, indent=2))


if __name__ == "__main__":
    main()
