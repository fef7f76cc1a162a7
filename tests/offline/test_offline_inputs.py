"""The offline commands never score a model on data it does not fit, and never overwrite what they read:
a label set other than the model's is refused, a study on another data set than the calibrated one is
refused before anything is written, and `evaluate` keeps its recorded exits under --out."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

from tests.support.helpers import sentences, tiny_workdir
from tests.support.processes import DIMEE


def _csv(path: Path, count: int, classes: int, seed: int) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i, text in enumerate(sentences(count, seed=seed)):
            writer.writerow([text, i % classes])
    return path


def _dimee(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIMEE_HOME": str(cwd), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([DIMEE, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_offline_commands_check_their_inputs_and_write_only_outputs(tmp_path):
    work = tiny_workdir(tmp_path / "w")
    a, b = _csv(tmp_path / "a.csv", 80, 2, seed=1), _csv(tmp_path / "b.csv", 64, 2, seed=2)
    three = _csv(tmp_path / "three.csv", 60, 3, seed=3)

    # Defect: a 2-class model on a 3-class file ran and reported nonsense.
    error = _one_line(_dimee("evaluate", "--workdir", str(work), "--dataset", str(three), cwd=tmp_path))
    assert "labelled 0, 1, 2 but the model answers 0, 1" in error

    assert _dimee("calibrate", "--workdir", str(work), "--dataset", str(a), cwd=tmp_path).returncode == 0
    # Defect: a study on another data set overwrote token_rarity.json, then ended in an IndexError.
    error = _one_line(_dimee("study", "--workdir", str(work), "--dataset", str(b), "--out", str(tmp_path / "s"),
                             cwd=tmp_path))
    assert "was calibrated on another data set" in error
    assert not (work / "token_rarity.json").exists()
    # evaluate scores another data set with the model's labels on its test split, against this calibration
    other = tmp_path / "other"
    proc = _dimee("evaluate", "--workdir", str(work), "--dataset", str(b), "--out", str(other), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (other / "report.md").exists() and "Cloud-only" in (other / "report.md").read_text()

    # Defect: evaluate wrote its records into the work folder it reads.
    out = tmp_path / "eval"
    proc = _dimee("evaluate", "--workdir", str(work), "--dataset", str(a), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "records" / "test.safetensors").exists()
    assert sorted(p.name for p in (work / "records").iterdir()) == ["calibration.safetensors"]
    report = (out / "report.md").read_text()
    assert "Floor: agreement" in report and "95% CI" in report

    proc = _dimee("study", "--workdir", str(work), "--dataset", str(a), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "default policy (chosen on calibration)" in proc.stdout and (work / "policy.json").exists()


def test_a_calibration_subset_is_recorded_and_evaluate_and_study_use_it(tmp_path):
    """`dimee calibrate --calibration-samples N --calibration-seed S` calibrates on a stratified subset of the
    calibration split; the commands after it read the same subset from calibration.json instead of refusing the
    recorded exits as another data set's."""
    work = tiny_workdir(tmp_path / "w")
    data = _csv(tmp_path / "a.csv", 200, 2, seed=1)
    error = _one_line(_dimee("calibrate", "--workdir", str(work), "--dataset", str(data), "--calibration-samples",
                             "5000", cwd=tmp_path))
    assert "--calibration-samples must be between 2 and the calibration split's" in error

    proc = _dimee("calibrate", "--workdir", str(work), "--dataset", str(data), "--calibration-samples", "20",
                  "--calibration-seed", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "20 calibration samples are too few for a 0.5-point budget" in proc.stderr
    cal = json.loads((work / "calibration.json").read_text())
    assert (cal["calibration_samples"], cal["calibration_seed"], sum(cal["pool_sizes"])) == (20, 3, 20)
    # 20 samples show nothing: both tuned cascades answer as the full model does
    assert all(g["loss_bound"] == 0.0 and g["certified"] for g in cal["cascade_guarantees"].values())

    out = tmp_path / "eval"
    proc = _dimee("study", "--workdir", str(work), "--dataset", str(data), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    policy = json.loads((work / "policy.json").read_text())
    assert policy["name"] == "Cloud-only" and policy["guarantee"]["loss_bound"] == 0.0
