"""The default's guarantee is printed beside its price (issue 29 item 4): cost on test and × the agreement floor."""

from __future__ import annotations

from dimee.method.certification import Budget, Guarantee
from dimee.offline.evaluation.study_report import guarantee_lines


def test_each_guarantee_line_says_what_the_setting_costs_against_the_floor():
    shown = Guarantee.of(2, 1585, Budget(0.5), certified=True).model_dump()
    row = {"cost": 0.61, "floor_multiple": 2.354, "delta_accuracy": -0.0004}
    study = {"default_policy": "Tuned-edge-cascade", "default_guarantee": shown,
             "cascade_guarantees": {"mobile": shown, "edge": shown},
             "methods": [{"name": "Tuned-edge-cascade", **row}]}
    default, mobile, edge, _ = guarantee_lines(study)
    assert default.startswith("- Default: loss against the full model ≤ ")
    assert default.endswith("; on test: cost 0.610, 2.35× the agreement floor, -0.04 pt against the full model.")
    assert edge.endswith("2.35× the agreement floor, -0.04 pt against the full model.")
    assert "on test" not in mobile  # the study had no row for it
