"""The sink's and tail's running line over predictions."""

from __future__ import annotations

from dimee.predictions.stats import PredictionStats


def test_no_predictions_say_so_instead_of_nan():
    """Defect: a sink stopped before any prediction printed 'cost nan (+nan% vs cloud-only)'."""
    assert PredictionStats().line() == "0 predictions"
