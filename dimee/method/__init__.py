"""DIMEE the method, on recorded exit probabilities: tiers and costs, exits, thresholds, calibration (α*, pools,
centroids), escalation, tuned cascades, routing features, the learned router and the named routing policies.
Pure computation: no broker, no store, no clock."""
