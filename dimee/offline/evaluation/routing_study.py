"""The routing study: every policy (paper's and this project's) on the test split, the default picked on the
calibration split, what the router-side features can predict, and accuracy-cost frontiers over the α grid."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dimee.common.choices import Objective
from dimee.common.errors import DimeeError
from dimee.common.workdir import Workdir
from dimee.data.dataset import Splits
from dimee.method import arithmetic, certification, learned_router
from dimee.method.calibration import Calibration
from dimee.method.certification import Budget, Guarantee
from dimee.method.exits import ExitRecords
from dimee.method.routing_features import FeatureExtractor, TokenRarity, save_rarity
from dimee.method.routing_policy import PAPER, POLICIES, save_default
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.offline.evaluation import baselines
from dimee.offline.evaluation.floors import floors
from dimee.offline.evaluation.policies import PolicyInputs, choose_default, policy_table
from dimee.offline.evaluation.report import method_rows
from dimee.offline.workflow import calibrated_splits

# The paper's rows that are not deployable policies (those come from the policy table, like every other).
NOT_POLICIES = ("Early-Exit", "Random-matched", "Oracle")
FIRST = ("Cloud-only", "Mobile-only", "Edge-only", "Early-Exit", "Random-matched", "DIMEE-F", "DIMEE-D")


@dataclass(frozen=True)
class StudyOptions:
    objective: Objective = "accuracy-budget"  # reward: deploy the paper's DIMEE-F at its reward α*
    seed: int = 0
    frontier: bool = True


def extract_features(splits: Splits, workdir: Workdir) -> tuple[FeatureExtractor, np.ndarray, np.ndarray]:
    folder = workdir.model
    embedder, tokenizer = load_model(folder, 0), load_tokenizer(folder)
    rarity = TokenRarity.fit(tokenizer, splits.train.texts)
    save_rarity(rarity, workdir.rarity)
    extractor = FeatureExtractor(embedder, tokenizer, rarity)
    return (extractor, extractor.extract(splits.calibration.texts, splits.calibration.text_pairs),
            extractor.extract(splits.test.texts, splits.test.text_pairs))


def _paper(names: tuple[str, ...], records: ExitRecords, cal_exits: ExitRecords,
           cal: Calibration) -> list[baselines.MethodResult]:
    """The named rows of the paper's evaluator, computed once."""
    by_name = {m.name: m for m in baselines.all_methods(records, cal_exits, cal)}
    return [by_name[n] for n in names]


def _ordered(results: list[baselines.MethodResult]) -> list[baselines.MethodResult]:
    """The paper's rows first, then this project's policies, the oracles and floors last."""
    def rank(r: baselines.MethodResult) -> tuple[int, int]:
        if r.name in FIRST:
            return 0, FIRST.index(r.name)
        return (2 if r.name.startswith(("Oracle", "Floor")) else 1), 0
    return sorted(results, key=rank)


def _results(split: PolicyInputs, cal_exits: ExitRecords, cal: Calibration, table: dict,
             paper: tuple[str, ...]) -> list[baselines.MethodResult]:
    results = _paper(paper, split.records, cal_exits, cal) + [fn(split, cal) for fn in table.values()]
    return _ordered(results + floors(split.records, cal))


@dataclass(frozen=True)
class Default:
    name: str
    rule: str
    guarantee: Guarantee | None


def _default(on_cal: list[baselines.MethodResult], cal: Calibration, options: StudyOptions) -> Default:
    if options.objective == "reward":
        return Default(PAPER, "the paper's DIMEE-F at its reward α* (objective: reward)", None)
    # Candidates: what the router and workers can deploy (no oracle, no random draw, no whole model on a phone).
    choice = choose_default({r.name: r for r in on_cal if r.name in POLICIES}, cal)
    budget = cal.config().max_drop
    rule = (f"cheapest deployable policy whose loss against the full model is shown within {budget:g} pt at "
            f"{100 * (1 - certification.RISK):.0f}% confidence on the calibration split")
    return Default(choice.name, rule, choice.guarantee)


def loss_bounds(on_cal: list[baselines.MethodResult], cal_exits: ExitRecords, cal: Calibration) -> dict[str, dict]:
    """Every deployable policy's losses against the full model on the calibration split, with their exact upper
    bound: what a user reads beside each row. Only the tuned cascades' (tested in a fixed order) and Cloud-only's
    are certificates; the rest describe settings chosen on the same samples."""
    full = cal_exits.probs[:, -1].argmax(-1) == cal_exits.labels
    budget = Budget(cal.config().max_drop)
    out = {}
    for r in on_cal:
        if r.name in POLICIES:
            shown = POLICIES[r.name].guarantee(cal)
            lost = int((full & (r.pred != cal_exits.labels)).sum())
            out[r.name] = (shown or Guarantee.of(lost, len(full), budget, certified=False)).model_dump()
    return out


def run_study(splits: Splits, workdir: Workdir, test: ExitRecords, options: StudyOptions | None = None) -> dict:
    """Every policy on `test` (the test split's recorded exits) and on calibration; saves the default policy
    chosen on calibration to WORKDIR/policy.json."""
    options = options or StudyOptions()
    splits, cal, cal_exits = calibrated_splits(splits, workdir)
    if len(test.labels) != len(splits.test):
        raise DimeeError(f"the test exits hold {len(test.labels)} samples, the test split {len(splits.test)}")
    extractor, f_cal, f_test = extract_features(splits, workdir)
    plan = cal.plan
    pools_cal = arithmetic.true_pools(cal_exits.probs, cal.alpha, plan)
    training = learned_router.TrainingSet(f_cal, extractor.names, pools_cal, cal_exits.probs)
    router, oof = learned_router.fit(training, cal, "continue", options.seed)
    router.save(workdir.learned_router)
    table = policy_table(router)
    on_test = _results(PolicyInputs(test, f_test), cal_exits, cal, table, NOT_POLICIES)
    # Early-Exit picks its α on calibration: scored there it would be tuned on what it is scored on.
    on_cal = _results(PolicyInputs(cal_exits, f_cal, learned_proba=oof), cal_exits, cal, table, NOT_POLICIES[1:])
    default = _default(on_cal, cal, options)
    bounds = loss_bounds(on_cal, cal_exits, cal)
    for row in (rows := method_rows(on_test, test, cal)) + (cal_rows := method_rows(on_cal, cal_exits, cal)):
        if row["name"] in bounds:
            row["loss_bound"], row["budget_shown"] = bounds[row["name"]]["loss_bound"], bounds[row["name"]]["certified"]
    save_default(workdir, default.name, default.rule, default.guarantee)

    hidden_bytes = 2 * (f_test[:, extractor.names.index("token_count")] + 2) * extractor.embedder.spec.hidden_size
    by_name = {r.name: r for r in on_test}
    report = {
        "methods": rows,
        "calibration_rows": cal_rows,
        "default_policy": default.name,
        "default_rule": default.rule,
        "default_guarantee": None if default.guarantee is None else default.guarantee.model_dump(),
        "loss_bounds": bounds,
        "cascade_guarantees": {start: g.model_dump() for start, g in cal.cascade_guarantees.items()},
        "escalated_share": {r.name: float((r.hops > 1).mean()) if r.hops is not None else 0.0 for r in on_test},
        "continue_hidden_bytes_fp16": {"mean": float(hidden_bytes.mean()),
                                       "p99": float(np.percentile(hidden_bytes, 99))},
        "learned_router": {"C": router.C, "cv_log_loss": router.cv_log_loss, "reward_matrix": router.reward_matrix,
                           "confusion": baselines.confusion(by_name["Learned+esc"], test, cal)},
        "hard_auc_calibration": learned_router.hard_auc(f_cal, extractor.names, pools_cal, len(plan) - 1, oof),
        "alpha": cal.alpha,
        "thresholds": {name: POLICIES[name].served_thresholds(cal).model_dump() for name in POLICIES
                       if POLICIES[name].thresholds == "tuned"},
        "calibration_warnings": cal.warnings,
    }
    if options.frontier:
        report["frontier"] = frontiers(cal, training, cal_exits, PolicyInputs(test, f_test), router)
    return report


def frontiers(cal: Calibration, training: learned_router.TrainingSet, cal_exits: ExitRecords, test: PolicyInputs,
              fitted: learned_router.LearnedRouter) -> dict[str, list[dict]]:
    """Each policy's accuracy and cost on test at every α of the grid (pools, centroids and the learned router,
    with `fitted`'s regularisation and seed, re-derived at that α from calibration)."""
    curves: dict[str, list[dict]] = {}
    for alpha in cal.grid:
        at = cal.at_alpha(cal_exits.probs, cal_exits.embeddings, alpha)
        pools = arithmetic.true_pools(cal_exits.probs, alpha, at.plan)
        router, _ = learned_router.fit(replace(training, pools=pools), at, "continue", fitted.seed,
                                       c_grid=(fitted.C,)) if len(set(pools.tolist())) > 1 else (None, None)
        results = [baselines.dimee(test.records, at, adaptive=False),
                   baselines.dimee(test.records, at, adaptive=True), baselines.oracle(test.records, at)]
        results += [fn(test, at) for fn in policy_table(router).values()]
        for row in method_rows(results, test.records, at):
            curves.setdefault(row["name"], []).append({"alpha": float(alpha), "accuracy": row["accuracy"],
                                                       "cost": row["cost"]})
    return curves
