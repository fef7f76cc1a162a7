"""The evaluation report's agreement-AUROC table: on the calibration split, never the test split."""

import json

import numpy as np
import pytest

from dimee.method.exits import ExitRecords
from dimee.offline.evaluation.report import build_report, render_markdown, write_report
from tests.support import hand_case as hc


def test_agreement_auroc_is_scored_on_the_calibration_split(hand_cal, tmp_path):
    # A test split on which s2 answers class 1 at the last layer too: there exit 1 always agrees (AUROC
    # undefined). On calibration (the hand case) exit 1 separates: s0 (0.90) and s1 (0.60) agree, s2 (0.55) not.
    test_probs = hc.PROBS.copy()
    test_probs[2, 1:] = [[0.3, 0.7], [0.2, 0.8]]
    test = ExitRecords(test_probs.astype(np.float32), hc.EMBEDDINGS.astype(np.float32), hc.LABELS)
    report = build_report(test, hc.records(), hand_cal)
    block = report["agreement_auroc"]
    assert block["split"] == "calibration" and block["samples"] == 3
    first, second = block["rows"]
    assert (first["layer"], first["tier_cap"], second["tier_cap"]) == (1, "mobile", "edge")
    assert first["auroc"]["max-softmax"] == pytest.approx(1.0) and first["best"] == "max-softmax"
    # Exit 2: every calibration sample answers as the last layer; undefined is null in report.json.
    assert second["differ"] == 0 and second["best"] is None
    assert set(second["auroc"].values()) == {None}
    write_report(report, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text(), parse_constant=_refuse)  # strict JSON: no NaN
    assert saved["agreement_auroc"]["rows"][1]["auroc"]["patience"] is None
    markdown = render_markdown(report, "t")
    assert "## Agreement AUROC per exit and signal (calibration split, 3 samples)" in markdown
    assert "| 1 | mobile | 66.7 | 1 | 1.000 | 1.000 | 1.000 | 1.000 | max-softmax |" in markdown
    assert "| 2 | edge | 100.0 | 0 | – | – | – | – | – |" in markdown


def _refuse(constant: str) -> None:
    raise ValueError(f"report.json holds {constant}, which is not JSON")
