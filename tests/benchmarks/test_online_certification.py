"""benchmarks.online_certification on a hand-made pool: Cloud-only until the safe setting is certified from free
evidence, then that setting (never the one over the budget), audits paid only where it answered below the cloud."""

from __future__ import annotations

import numpy as np

from benchmarks.online_certification import Pool, Rules, one_order


def _pool(n: int, rng: np.random.Generator) -> Pool:
    full = np.ones(n, dtype=bool)
    risky = rng.random(n) >= 0.1  # the cheaper setting loses 10% of samples: over any small budget
    return Pool(lambdas=[0.9, 0.6], correct=np.array([full, risky]), agrees=np.array([full, risky]),
                below=np.ones((2, n), dtype=bool), cost=np.array([np.full(n, 0.5), np.full(n, 0.3)]),
                full_correct=full, cloud_cost=1.0)


def test_the_stream_serves_the_safe_setting_once_certified_and_never_the_risky_one():
    rng = np.random.default_rng(0)
    pool = _pool(4000, rng)
    run = one_order(pool, np.arange(150), np.arange(150, 4000), Rules(0.005, 0.05, labelled=True), rng)
    assert run.first_cheaper is not None and 1 < run.first_cheaper < 2000
    assert run.final_lambda == 0.9 and run.windows_within == run.windows
    # Cloud-only until then; the safe setting (0.5) plus 5% audits at a cloud run each after.
    expected = ((run.first_cheaper - 1) * 1.0 + (3850 - run.first_cheaper + 1) * (0.5 + 0.05)) / 3850
    assert abs(run.mean_cost - expected) < 0.02
