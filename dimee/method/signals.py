"""Candidate confidence signals at every exit, scored by how well they tell which samples an early exit answers
as the full model (the last layer) does.

A cascade keeps its promise (accuracy within a budget of the full model) by escalating the samples whose early
answer would differ from the last layer's; the better a signal ranks those samples below the agreeing ones, the
fewer samples must be escalated for the same guarantee. The score is the AUROC of "exit k's prediction equals
the last layer's" (positive) against "differs", per exit k < L. All functions are pure, on a probability array
`probs` of shape (N, L, C): N samples, L exits, C classes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score


def max_softmax(probs: np.ndarray) -> np.ndarray:
    """(N, L): the top class's probability, the signal the cascades use today."""
    return probs.max(-1)


def margin(probs: np.ndarray) -> np.ndarray:
    """(N, L): top-1 minus top-2 probability (0 with a single class)."""
    if probs.shape[-1] < 2:
        return np.zeros(probs.shape[:-1])
    top2 = np.sort(probs, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def negative_entropy(probs: np.ndarray) -> np.ndarray:
    """(N, L): Σ p log p (0 log 0 = 0), highest (0) for a one-hot answer."""
    p = probs.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(-1)


def patience_count(probs: np.ndarray) -> np.ndarray:
    """(N, L) int: the number of consecutive exits ending at k (k itself included, so ≥ 1) whose prediction
    equals exit k's — PABEE's patience plus one."""
    pred = probs.argmax(-1)
    count = np.ones(pred.shape, dtype=np.int64)
    for k in range(1, pred.shape[1]):
        same = pred[:, k] == pred[:, k - 1]
        count[:, k] = np.where(same, count[:, k - 1] + 1, 1)
    return count


def patience(probs: np.ndarray) -> np.ndarray:
    """(N, L): patience count, ties broken by max-softmax. Max-softmax is in [0, 1], so half of it added to an
    integer count orders samples by count first, by max-softmax only within the same count."""
    return patience_count(probs) + 0.5 * max_softmax(probs)


# Every candidate, today's first: where two signals score the same, the earlier one is named best.
SIGNALS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "max-softmax": max_softmax,
    "margin": margin,
    "neg-entropy": negative_entropy,
    "patience": patience,
}


def agrees_with_last(probs: np.ndarray) -> np.ndarray:
    """(N, L) bool: exit k's prediction equals the last exit's (always true at the last)."""
    pred = probs.argmax(-1)
    return pred == pred[:, -1:]


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Exact AUROC (scikit-learn's, as the learned router's features are scored): the chance that a random
    positive scores above a random negative, ties counting one half. NaN when either class is empty: nothing to
    separate."""
    scores, positive = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(positive, dtype=bool).ravel()
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


# Signals that order samples alike in exact arithmetic (with two classes: max-softmax, margin and entropy) differ
# by rounding in their last digits (float32 probabilities); a signal is named best only where it beats an earlier
# one by at least this much, the precision the report shows.
BEST_BY = 1e-3


def best_signal(scores: dict[str, float]) -> str | None:
    """The first signal, in `scores`' order, whose AUROC is within BEST_BY of the highest; None when no AUROC is
    defined."""
    defined = {name: s for name, s in scores.items() if not np.isnan(s)}
    if not defined:
        return None
    highest = max(defined.values())
    return next(name for name, s in defined.items() if s >= highest - BEST_BY)


def agreement_auroc(probs: np.ndarray) -> list[dict]:
    """One row per exit k < L: `layer` (1-based), `agree` (share of samples whose exit-k prediction equals the
    last layer's), `differ` (how many do not), `auroc` (signal name → AUROC, NaN where every sample agrees or
    none does) and `best` (`best_signal`: the highest AUROC, today's signal unless another beats it by BEST_BY)."""
    positive = agrees_with_last(probs)
    values = {name: signal(probs) for name, signal in SIGNALS.items()}
    rows = []
    for k in range(probs.shape[1] - 1):
        scores = {name: auroc(v[:, k], positive[:, k]) for name, v in values.items()}
        rows.append({"layer": k + 1, "agree": float(positive[:, k].mean()) if len(positive) else float("nan"),
                     "differ": int((~positive[:, k]).sum()), "auroc": scores,
                     "best": best_signal(scores)})
    return rows
