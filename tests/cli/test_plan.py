"""`dimee plan` as a user meets it: the plan printed, the values file written, one-line errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dimee.cli import app
from dimee.streaming.processes import DIMEE_IN_PYTHON

ROOT = Path(__file__).resolve().parents[2]
COSTS = str(ROOT / "docs" / "measured" / "cost_model.json")
SHARES = "mobile=0.5,edge=0.3,cloud=0.2"
BUDGET = ("--p99-ms", "2000")


def test_plan_prints_every_role_and_writes_the_charts_values(tmp_path):
    values = tmp_path / "values.yaml"
    result = CliRunner().invoke(app, ["plan", "--rate", "10000", "--shares", SHARES, "--costs", COSTS, *BUDGET,
                                      "--gpu-rate", "cloud=5000", "--values", str(values)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.split()}
    for role in ("router", "worker-mobile", "worker-edge", "worker-cloud", "sink"):
        assert role in rows, result.output
    assert rows["worker-cloud"][1] == "cuda" and rows["worker-mobile"][1] == "cpu"
    assert "brokers:" in result.output and "rates from CPU:" in result.output
    written = yaml.safe_load(values.read_text())
    assert written["workers"]["cloud"]["gpu"] == {"enabled": True}
    assert written["topics"]["cloud"] >= written["workers"]["cloud"]["autoscaling"]["maxReplicas"]
    assert values.read_text().startswith("# dimee plan: 10,000 samples/s")


def test_at_least_once_plans_smaller_batches_for_a_tight_budget(tmp_path):
    def router_batch(*more: str) -> int:
        result = CliRunner().invoke(app, ["plan", "--rate", "1000", "--shares", SHARES, "--costs", COSTS,
                                          "--values", str(tmp_path / "v.yaml"), *(more or BUDGET)])
        assert result.exit_code == 0, result.output
        return yaml.safe_load((tmp_path / "v.yaml").read_text())["router"]["maxBatch"]

    assert router_batch("--p99-ms", "600", "--guarantee", "at-least-once") < router_batch()


def one_line_error(*args: str) -> str:
    done = subprocess.run([*DIMEE_IN_PYTHON, "plan", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.parametrize(("args", "says"), [
    (("--shares", "mobile=half", *BUDGET), "--shares 'mobile=half': give TIER=NUMBER pairs"),
    (("--shares", "mobile=0.5", *BUDGET), "tier shares add up to 0.500"),
    (("--shares", SHARES, *BUDGET, "--gpu-rate", "cloud"), "--gpu-rate 'cloud': give TIER=NUMBER pairs"),
    (("--shares", SHARES), "Missing option '--p99-ms'"),  # not a bare '--p99-ms:'
    (("--shares", SHARES, "--p99-ms", "500"), "raise the budget or plan for --guarantee at-least-once"),
    (("--shares", SHARES, "--p99-ms", "100", "--guarantee", "at-least-once"),
     "the worker-mobile's takes 91 ms even at batches of 8 (a commit is 8 ms): raise the budget"),
    (("--shares", SHARES, *BUDGET, "--headroom", "2"), "--headroom"),
])
def test_bad_arguments_are_one_line(args, says):
    assert says in one_line_error("--rate", "1000", "--costs", COSTS, "--values", "/dev/null", *args)


def test_a_missing_cost_file_says_what_to_run(tmp_path):
    line = one_line_error("--rate", "1000", "--shares", SHARES, *BUDGET, "--costs", str(tmp_path / "none.json"))
    assert "cannot read the cost file" in line


def test_a_missing_required_option_of_any_command_is_one_line_that_says_so():
    done = subprocess.run([*DIMEE_IN_PYTHON, "work", "--broker", "kafka://127.0.0.1:1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: Missing option '--tier'. Choose from: mobile, edge, cloud"
