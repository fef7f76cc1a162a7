"""A learned, cost-aware router. A multinomial logistic regression on router-side features predicts the
pool probabilities p(k | x); the start tier is argmax_s Σ_k p_k · R[s, k], where R[s, k] is the mean
calibration reward of starting a pool-k sample on tier s (escalation costs included). Stored as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from dimee.common.choices import EscalationMode
from dimee.method.arithmetic import true_pools
from dimee.method.calibration import Calibration
from dimee.method.escalation import serve_escalating

C_GRID = (0.0001, 0.001, 0.01, 0.1, 1.0)


class LearnedRouter(BaseModel):
    feature_names: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[list[float]]  # one row per class in `classes`
    intercept: list[float]
    classes: list[int]
    num_pools: int
    C: float
    cv_log_loss: dict[str, float]
    reward_matrix: list[list[float]]  # [start tier][true pool]
    escalation: str
    seed: int

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = (features - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = z @ np.asarray(self.coef).T + np.asarray(self.intercept)
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        out = np.zeros((len(features), self.num_pools))
        out[:, self.classes] = p
        return out

    def decide(self, proba: np.ndarray) -> np.ndarray:
        return (proba @ np.asarray(self.reward_matrix).T).argmax(1)

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json())

    @classmethod
    def load(cls, path: Path) -> LearnedRouter:
        return cls.model_validate_json(path.read_text())


def reward_matrix(probs: np.ndarray, cal: Calibration, escalation: EscalationMode) -> np.ndarray:
    """R[s, k]: mean of conf_exit − β·cost over calibration samples of true pool k started on tier s."""
    plan, cost = cal.plan, cal.cost_model
    pools = true_pools(probs, cal.alpha, plan)
    conf = probs.max(-1)
    matrix = np.zeros((len(plan), len(plan)))
    for s in range(len(plan)):
        journey = serve_escalating(probs, np.full(len(probs), s), cal, escalation)
        reward = conf[np.arange(len(probs)), journey.exit_layer - 1] - cost.beta * journey.cost
        for k in range(len(plan)):
            members = pools == k
            matrix[s, k] = reward[members].mean() if members.any() else 0.0
    return matrix


def _standardise(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = features.mean(0)
    scale = features.std(0)
    scale[scale < 1e-12] = 1.0
    return mean, scale


@dataclass(frozen=True)
class TrainingSet:
    """What the learned router learns from: router-side features of the calibration split and their names,
    each sample's true pool, and its recorded exit probabilities."""

    features: np.ndarray
    names: list[str]
    pools: np.ndarray
    probs: np.ndarray


def fit(data: TrainingSet, cal: Calibration, escalation: EscalationMode = "continue", seed: int = 0,
        c_grid: tuple[float, ...] = C_GRID) -> tuple[LearnedRouter, np.ndarray]:
    """The router, and out-of-fold pool probabilities for every training sample (for honest selection)."""
    features, pools, plan = data.features, data.pools, cal.plan
    counts = np.bincount(pools, minlength=len(plan))
    usable = np.isin(pools, np.flatnonzero(counts >= 2))
    classes = sorted(set(pools[usable].tolist()))
    folds = int(min(5, counts[classes].min())) if len(classes) > 1 else 0
    oof = np.zeros((len(pools), len(plan)))
    mean, scale = _standardise(features)
    z = (features - mean) / scale
    cv_loss: dict[str, float] = {}
    best_c = c_grid[0]
    if folds >= 2:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(z[usable], pools[usable]))
        idx = np.flatnonzero(usable)
        for c in c_grid:
            fold_proba = np.zeros((len(idx), len(plan)))
            for train, held in splits:
                model = LogisticRegression(C=c, max_iter=2000)
                model.fit(z[idx[train]], pools[idx[train]])
                fold_proba[np.ix_(held, model.classes_)] = model.predict_proba(z[idx[held]])
            cv_loss[str(c)] = float(log_loss(pools[idx], np.clip(fold_proba[:, classes], 1e-12, 1),
                                             labels=classes))
            if cv_loss[str(c)] <= min(cv_loss.values()):
                best_c, oof[idx] = c, fold_proba
    if len(classes) > 1:
        final = LogisticRegression(C=best_c, max_iter=2000).fit(z[usable], pools[usable])
        coef, intercept = final.coef_, final.intercept_
        if len(classes) == 2:  # sklearn stores one row for two classes
            coef, intercept = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    else:  # one pool only: a constant predictor
        coef, intercept = np.zeros((1, features.shape[1])), np.zeros(1)
        classes = classes or [len(plan) - 1]
        oof[:, classes[0]] = 1.0
    router = LearnedRouter(
        feature_names=data.names, mean=mean.tolist(), scale=scale.tolist(), coef=np.asarray(coef).tolist(),
        intercept=np.asarray(intercept).tolist(), classes=classes, num_pools=len(plan), C=best_c,
        cv_log_loss=cv_loss, reward_matrix=reward_matrix(data.probs, cal, escalation).tolist(),
        escalation=escalation, seed=seed,
    )
    return router, oof


def hard_auc(features: np.ndarray, names: list[str], pools: np.ndarray, hard_pool: int,
             proba: np.ndarray | None = None) -> dict[str, float]:
    """ROC-AUC of each scalar feature (and of the model's p(hard)) for telling hard samples apart."""
    target = (pools == hard_pool).astype(int)
    if target.min() == target.max():
        return {}
    out = {}
    for i, name in enumerate(names):
        if not name.startswith(("emb_", "raw_")):
            out[name] = float(roc_auc_score(target, features[:, i]))
    if proba is not None:
        out["model_p_hard_out_of_fold"] = float(roc_auc_score(target, proba[:, hard_pool]))
    return out
