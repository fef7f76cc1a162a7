"""The streamed drift report: every sample of every segment streamed with and without the controller, scored per
window against the full model's answers and the window's floor from the same model's recorded exits."""

from __future__ import annotations

import json

import pytest

from dimee.composition.drift_windows import Pace, Segment, drift_windows
from dimee.data.dataset import TextDataset
from dimee.streaming.config import Settings
from tests.support.helpers import deployment, stream_records


def _segment(name: str, count: int, seed: int) -> Segment:
    records = stream_records(count, seed=seed, prefix=name)
    return Segment(name, TextDataset(name, [r["text"] for r in records], [r["label"] for r in records], ["0", "1"]))


def test_each_window_reports_both_runs_against_the_full_model_and_its_floor(workdir, cal, tmp_path):
    served = deployment(workdir, cal, "Edge+escalation")
    settings = Settings(audit_rate=0.5, control_target=0.05)
    report = drift_windows(served, [_segment("a", 50, 71), _segment("b", 40, 72)], settings, tmp_path,
                           Pace(window=40, rate=None))
    assert [w["samples"] for w in report["windows"]] == [[0, 40], [40, 80], [80, 90]]
    assert report["windows"][1]["segments"] == ["a", "b"]
    for window in report["windows"]:
        for run in ("fixed", "controller"):
            row = window[run]
            assert row["lost"] == 0 and row["drop_interval"][0] <= row["drop"] <= row["drop_interval"][1]
            assert row["floor_multiple"] == pytest.approx(row["cost"] / window["floor"])
    assert sum(w["fixed"]["audits"] for w in report["windows"]) > 0
    assert json.loads((tmp_path / "drift-windows.json").read_text()) == report
    assert "| 3 | b |" in (tmp_path / "drift-windows.md").read_text()
