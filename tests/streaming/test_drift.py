"""The drift score: the Kolmogorov-Smirnov distance of a window from the calibration distribution, flagged above
its 0.1% critical value, logged when it starts and when it ends, and fed by the router on every policy."""

from __future__ import annotations

import numpy as np
import pytest
import structlog
from dimee.routers.router import Router
from dimee.state.memory import InMemoryCentroidStore
from scipy.stats import ks_2samp
from structlog.testing import capture_logs

from dimee.composition.pipeline import PipelineOptions, run_pipeline
from dimee.method import arithmetic
from dimee.streaming import metrics
from dimee.streaming.config import Settings
from dimee.streaming.drift import DriftWatch, ks_distance
from dimee.streaming.messages import Sample
from dimee.streaming.runtime import configure_logging
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support import hand_case
from tests.support.helpers import context, deployment, stream_records


def test_the_distance_to_quantiles_is_the_two_sample_statistic():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=50_000)
    quantiles = np.quantile(reference, np.linspace(0, 1, 101))
    for shift in (0.0, 0.3, 2.0):
        window = rng.normal(loc=shift, size=500)
        assert ks_distance(window, quantiles) == pytest.approx(ks_2samp(window, reference).statistic, abs=0.02)
    assert ks_distance(np.full(10, 100.0), quantiles) == 1.0


def test_a_shifted_window_is_flagged_and_logged_once_when_it_starts_and_when_it_ends():
    rng = np.random.default_rng(1)
    quantiles = np.quantile(rng.normal(size=2000), np.linspace(0, 1, 101))
    watch = DriftWatch("test-signal", quantiles, 2000, window=500)
    before = structlog.get_config()  # another test may have set WARNING, which drops "drift over" (info)
    try:
        configure_logging("INFO")
        with capture_logs() as said:  # the events themselves, wherever the logging writes them
            calm = watch.add(rng.normal(size=1000).tolist())
            shifted = watch.add(rng.normal(loc=0.5, size=1000).tolist())
            back = watch.add(rng.normal(size=500).tolist())
    finally:
        structlog.configure(**before)
    assert [r.drifted for r in calm + shifted + back] == [False, False, True, True, False]
    assert metrics.DRIFT_DETECTED.labels("test-signal")._value.get() == 0
    assert [(e["event"], e["log_level"]) for e in said] == [("drift detected", "warning"), ("drift over", "info")]


def test_the_router_scores_drift_on_a_policy_whose_routing_measures_no_distance(workdir, cal):
    before = metrics.DRIFT_SCORE.labels("nearest_centroid")._value.get()
    settings = Settings(broker="memory://drift", state="memory://drift", topic_prefix="drift", audit_rate=0.0)
    run_pipeline(stream_records(500, seed=61), deployment(workdir, cal, "Edge+escalation"), settings,
                 PipelineOptions(progress=False))
    score = metrics.DRIFT_SCORE.labels("nearest_centroid")._value.get()
    assert score != before and 0.0 <= score <= 1.0
    assert len(cal.nearest_centroid_quantiles) == 101


def test_adaptive_routing_scores_drift_against_the_calibrated_centroids_not_the_moved_ones(workdir, cal):
    """Defect: under DIMEE-D the score measured the distance to the centroids adaptive routing had moved (those in
    the store), so in-domain windows scored higher (~40% in `make demo`, which logged `drift detected` on them).
    The score of a window is its distances to the *calibrated* centroids against the calibration's quantiles."""
    store = InMemoryCentroidStore()  # centroids moved far from calibration, as a long adaptive stream leaves them
    store.seed([None if c is None else c + 0.5 for c in cal.centroid_arrays()], cal.pool_sizes)
    router = Router(context(InMemoryBroker(), Topics("adapted")), deployment(workdir, cal, "DIMEE-D"), store, "r")
    samples = [Sample(id=r["id"], text=r["text"]) for r in stream_records(500, seed=62)]  # one window, in-domain
    router.process([(None, s) for s in samples])  # type: ignore[misc]
    calibrated = arithmetic.nearest_distances(router.embedder.embed(samples), cal.centroid_arrays(), cal.distance)
    expected = ks_distance(calibrated, np.array(cal.nearest_centroid_quantiles))
    assert metrics.DRIFT_SCORE.labels("nearest_centroid")._value.get() == pytest.approx(expected)
    assert metrics.DRIFT_DETECTED.labels("nearest_centroid")._value.get() == 0  # in-domain: no alarm


def test_a_calibration_served_at_another_alpha_takes_the_drift_reference_of_its_own_centroids(hand_cal):
    """Defect: `at_alpha` re-derived the pools and centroids but kept the quantiles of the old centroids'
    distances, so the very calibration samples scored 0.16 against their own reference (the tests' tiny work
    folder is made this way). At α = 0.5 every hand-case sample leaves at the first exit: one pool, centroid
    (2/3, 4/3), distances √20/3, √32/3 and √68/3."""
    at = hand_cal.at_alpha(hand_case.PROBS, hand_case.EMBEDDINGS, 0.5)
    assert at.pool_sizes == [3, 0, 0]
    quantiles = at.nearest_centroid_quantiles
    assert [quantiles[0], quantiles[50], quantiles[100]] == pytest.approx(np.sqrt([20, 32, 68]) / 3)
