"""Could a learned head tell agreement with the last layer better than max-softmax? A measurement on recorded
calibration exits, five-fold cross-validated: for every exit k below the last, the AUROC of max-softmax against
heads fitted on what the exits up to k said (their probabilities, and which of them agree with exit k), alone or
with the routing embedding. Not a deployable head (that would be fitted on a held-out slice of the train split);
a bound on what the probabilities hold.

    python -m benchmarks.agreement_heads --workdir artifacts/demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from dimee.common.workdir import Workdir
from dimee.method.exits import ExitRecords
from dimee.method.signals import agrees_with_last, auroc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="A calibrated work folder.")
    args = parser.parse_args()
    exits = ExitRecords.load(Workdir(args.workdir).exits("calibration"))
    probs, pred, agree = exits.probs, exits.probs.argmax(-1), agrees_with_last(exits.probs)
    print(f"{len(probs)} calibration samples, 5-fold cross-validated")
    print("| exit | max-softmax | boosted trees on exits ≤ k | logistic on exits ≤ k | logistic + embedding |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for k in range(probs.shape[1] - 1):
        y = agree[:, k]
        if y.all() or not y.any():
            continue
        features = np.concatenate([probs[:, : k + 1].reshape(len(probs), -1),
                                   (pred[:, : k + 1] == pred[:, k : k + 1]).astype(float)], axis=1)
        with_embedding = np.concatenate([features, exits.embeddings], axis=1)
        heads = [(HistGradientBoostingClassifier(max_depth=3, max_iter=100, random_state=0), features),
                 (LogisticRegression(max_iter=1000), features),
                 (LogisticRegression(max_iter=2000, C=0.1), with_embedding)]
        scores = [auroc(cross_val_predict(head, x, y, cv=5, method="predict_proba")[:, 1], y) for head, x in heads]
        print(f"| {k + 1} | {auroc(probs[:, k].max(-1), y):.3f} | " + " | ".join(f"{s:.3f}" for s in scores) + " |")


if __name__ == "__main__":
    main()
