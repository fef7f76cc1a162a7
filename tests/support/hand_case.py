"""Three samples, L = 3 layers, C = 2, m = 1, n = 2, default costs; every number below is worked by hand.

confidence per layer:  s0 0.90 0.95 0.99 (class 1)   s1 0.60 0.85 0.90 (class 1)
                       s2 0.55 (class 1), 0.60 0.70 (class 0)         labels: 1, 1, 0
"""

import numpy as np

from dimee.method.exits import ExitRecords


def two_class(p_class1: list[float]) -> np.ndarray:
    return np.array([[1 - p, p] for p in p_class1])


PROBS = np.stack([
    two_class([0.90, 0.95, 0.99]),
    two_class([0.60, 0.85, 0.90]),
    two_class([0.55, 0.40, 0.30]),
])
LABELS = np.array([1, 1, 0])
EMBEDDINGS = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
M, N = 1, 2
GRID = np.linspace(0.5, 1.0, 10)

# Mean reward at each α of the grid (worked by hand in the comments of test_method.py).
REWARD = [0.65333333, 0.65, 0.67666667, 0.67666667, 0.67666667, 0.67666667, 0.67666667, 0.62333333, 0.62,
          0.56333333]
ALPHA_STAR = GRID[2]  # 0.6111: first α of the tie at 0.676667; pools easy / moderate / hard


def records() -> ExitRecords:
    return ExitRecords(PROBS.astype(np.float32), EMBEDDINGS.astype(np.float32), LABELS)


def calibration(**options):
    """The hand case calibrated (α* = 0.6111, m = 1, n = 2, L = 3); options are CalibrationConfig fields."""
    from dimee.method.calibration import CalibrationConfig, calibrate

    return calibrate(ExitRecords(PROBS, EMBEDDINGS, LABELS), CalibrationConfig(m=M, n=N, **options))
