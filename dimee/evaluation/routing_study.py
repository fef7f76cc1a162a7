"""The routing study: every policy (paper's and this project's) on the test split, the default picked on the
calibration split, what the router-side features can predict, and accuracy-cost frontiers over the α grid."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dimee import learned_router, method
from dimee.calibration import Calibration
from dimee.data.dataset import Splits
from dimee.evaluation import baselines
from dimee.evaluation.policies import PolicyInputs, choose_default, policy_table
from dimee.evaluation.report import method_rows
from dimee.exits import ExitRecords
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.routing_features import FeatureExtractor, TokenRarity, save_rarity
from dimee.routing_policy import POLICIES, save_default
from dimee.workdir import Workdir

PAPER_ROWS = ("Cloud-only", "Mobile-only", "Edge-only", "Early-Exit", "Random-matched", "DIMEE-F", "DIMEE-D", "Oracle")


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


def run_study(splits: Splits, workdir: Workdir, max_drop: float = 0.5, seed: int = 0, frontier: bool = True) -> dict:
    cal = Calibration.load(workdir.calibration)
    cal_exits = ExitRecords.load(workdir.exits("calibration"))
    test = ExitRecords.load(workdir.exits("test"))
    extractor, f_cal, f_test = extract_features(splits, workdir)
    plan = cal.tier_plan()
    pools_cal = method.true_pools(cal_exits.probs, cal.alpha, plan)
    training = learned_router.TrainingSet(f_cal, extractor.names, pools_cal, cal_exits.probs)
    router, oof = learned_router.fit(training, cal, "continue", seed)
    router.save(workdir.learned_router)
    table = policy_table(router)

    test_results = _paper(PAPER_ROWS, test, cal_exits, cal)
    test_results += [fn(PolicyInputs(test, f_test), cal) for fn in table.values()]
    cal_results = _paper(tuple(n for n in PAPER_ROWS if n != "Early-Exit"), cal_exits, cal_exits, cal)
    cal_results += [fn(PolicyInputs(cal_exits, f_cal, learned_proba=oof), cal) for fn in table.values()]
    test_rows = method_rows(test_results, test, cal)
    cal_rows = {row["name"]: row for row in method_rows(cal_results, cal_exits, cal)}
    # Candidates: what the router and workers can deploy (no oracle, no random draw, no whole model on a phone).
    deployable = {name: row for name, row in cal_rows.items() if name in POLICIES}
    default = choose_default(deployable, cal.full_model_accuracy, max_drop)
    rule = (f"cheapest deployable policy within {max_drop} pt of the full model's calibration accuracy "
            f"({100 * cal.full_model_accuracy:.2f}%), measured on the calibration split")
    save_default(workdir, default, rule)

    hidden_bytes = 2 * (f_test[:, extractor.names.index("token_count")] + 2) * extractor.embedder.spec.hidden_size
    escalated = {r.name: float((r.hops > 1).mean()) if r.hops is not None else 0.0 for r in test_results}
    learned_test = next(r for r in test_results if r.name == "Learned+esc")
    report = {
        "methods": test_rows,
        "calibration_rows": list(cal_rows.values()),
        "default_policy": default,
        "default_rule": rule,
        "escalated_share": escalated,
        "continue_hidden_bytes_fp16": {"mean": float(hidden_bytes.mean()),
                                       "p99": float(np.percentile(hidden_bytes, 99))},
        "learned_router": {"C": router.C, "cv_log_loss": router.cv_log_loss, "reward_matrix": router.reward_matrix,
                           "confusion": baselines.confusion(learned_test, test, cal)},
        "hard_auc_calibration": learned_router.hard_auc(f_cal, extractor.names, pools_cal, len(plan) - 1, oof),
        "alpha": cal.alpha,
    }
    if frontier:
        report["frontier"] = frontiers(cal, training, cal_exits, PolicyInputs(test, f_test), router)
    return report


def frontiers(cal: Calibration, training: learned_router.TrainingSet, cal_exits: ExitRecords, test: PolicyInputs,
              fitted: learned_router.LearnedRouter) -> dict[str, list[dict]]:
    """Each policy's accuracy and cost on test at every α of the grid (pools, centroids and the learned router,
    with `fitted`'s regularisation and seed, re-derived at that α from calibration)."""
    curves: dict[str, list[dict]] = {}
    for alpha in cal.grid:
        at = cal.at_alpha(cal_exits.probs, cal_exits.embeddings, alpha)
        pools = method.true_pools(cal_exits.probs, alpha, at.tier_plan())
        router, _ = learned_router.fit(replace(training, pools=pools), at, "continue", fitted.seed,
                                       c_grid=(fitted.C,)) if len(set(pools.tolist())) > 1 else (None, None)
        results = [baselines.dimee(test.records, at, adaptive=False),
                   baselines.dimee(test.records, at, adaptive=True), baselines.oracle(test.records, at)]
        results += [fn(test, at) for fn in policy_table(router).values()]
        for row in method_rows(results, test.records, at):
            curves.setdefault(row["name"], []).append({"alpha": float(alpha), "accuracy": row["accuracy"],
                                                       "cost": row["cost"]})
    return curves
