"""Fixed-seed stratified splits (docs/method.md: train 60 / calibration 15 / test 25 for unsplit data)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_FRACTIONS = (0.60, 0.15, 0.25)


def stratified_subset(labels: Sequence[int], samples: int, seed: int = 0) -> np.ndarray:
    """`samples` indices keeping every label's share (largest remainders get the leftover places), sorted."""
    labels_arr = np.asarray(labels)
    classes, counts = np.unique(labels_arr, return_counts=True)
    quota = counts * samples / len(labels_arr)
    places = np.floor(quota).astype(int)
    places[np.argsort(places - quota)[: samples - places.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels_arr == c), k, replace=False) for c, k in zip(classes, places,
                                                                                            strict=True)]
    return np.sort(np.concatenate(chosen))


def stratified_indices(
    labels: Sequence[int], fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> list[np.ndarray]:
    """Split indices so that every label keeps its share in every part; each part is shuffled."""
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    parts: list[list[int]] = [[] for _ in fractions]
    for label in np.unique(labels_arr):
        members = np.flatnonzero(labels_arr == label)
        rng.shuffle(members)
        bounds = np.round(np.cumsum(fractions)[:-1] * len(members)).astype(int)
        for part, chunk in zip(parts, np.split(members, bounds), strict=True):
            part.extend(chunk.tolist())
    out = []
    for part in parts:
        arr = np.array(sorted(part), dtype=np.int64)
        rng.shuffle(arr)
        out.append(arr)
    return out
