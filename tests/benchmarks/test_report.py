"""The bench's figures from its rounds: each ratio from two figures of the same round, and the headline keys in
runs/benchmark.json."""

import pytest

from benchmarks.report import headline, summarise, write_markdown
from tests.benchmarks.fake_bench import pipeline_run, stages_run, with_paced


def _runs(bound: list[float], pipeline: list[float], router: list[float] | None, router_alone: list[float]) -> dict:
    """Rounds with the given rates (the other figures fixed); `router` None: --code, no in-process figures."""
    rounds = range(len(bound))
    stages = [stages_run(1.0) for _ in rounds]
    for round_stages, per_s in zip(stages, router_alone, strict=True):
        round_stages["router"]["per_s"] = per_s
    return with_paced({
        "bound": [{"per_s": b, "shares": {"mobile": 1.0}} for b in bound],
        "exactly_once": [pipeline_run(p) for p in pipeline], "at_least_once": [pipeline_run(100.0) for _ in rounds],
        "router": [] if router is None else [{"per_s": r, "samples": 100, "parts_s": {"embed": 0.01},
                                              "state": "redis", "batch": 64} for r in router],
        "stages": stages, "one_worker": [{"per_s": 50.0} for _ in rounds],
        "two_workers": [{"per_s": 95.0} for _ in rounds], "one_worker_two_threads": [{"per_s": 70.0} for _ in rounds],
        "busiest": ["edge" for _ in rounds]})


def _headline(runs: dict) -> dict:
    return headline(summarise(runs) | {"e_paced": {"p99_ms": 812.0}})


def test_a_ratio_is_each_rounds_own_over_the_rounds():
    """The machine was busy while round 1's bound ran: that round's ratio is off, the others are not, and the
    figure says so instead of dividing a median of some rounds by a median of others."""
    runs = _runs(bound=[30.0, 156.0, 120.0], pipeline=[60.0, 140.0, 100.0], router=[4000.0, 5000.0, 5500.0],
                 router_alone=[520.0, 450.0, 550.0])
    figures = summarise(runs)
    assert figures["a_pipeline"]["ratio"] == pytest.approx({"median": 140 / 156, "min": 100 / 120, "max": 2.0})
    assert figures["router"]["stage_ratio"] == pytest.approx({"median": 0.1, "min": 0.09, "max": 0.13})
    assert figures["router"]["per_s"] == {"median": 5000.0, "min": 4000.0, "max": 5500.0}
    assert _headline(runs) == pytest.approx({"latency_p99_ms": 812.0, "router_stage_ratio": 0.1,
                                             "pipeline_ratio": 140 / 156})


def test_the_table_prints_each_ratios_median_and_range(tmp_path):
    runs = _runs(bound=[30.0, 156.0, 120.0], pipeline=[60.0, 140.0, 100.0], router=[4000.0, 5000.0, 5500.0],
                 router_alone=[520.0, 450.0, 550.0])
    figures = {"machine": "host: 2 cores", "code": "this checkout", "samples": 600, "batch": 32,
               "policy": "DIMEE-F", "rounds": 3, "started": "today"} | summarise(runs)
    rows = {line.split(" | ")[1]: line.split(" | ")[2] for line in write_markdown(figures, tmp_path / "b.md")
            .splitlines() if line.startswith("| ") and " | " in line}
    assert rows["pipeline ÷ bound, each round's"] == "0.90 (0.83–2.00)"
    assert rows["router alone on Kafka (b) ÷ in-process, each round's"] == "0.10 (0.09–0.13)"


def test_no_router_ratio_without_its_in_process_rate():
    """--code skips the in-process figures: the ratio is missing, not made up."""
    runs = _runs(bound=[200.0], pipeline=[100.0], router=None, router_alone=[500.0])
    assert "router" not in summarise(runs)
    assert _headline(runs)["router_stage_ratio"] is None


def test_figure_j_says_whether_the_markers_are_written_before_the_next_transaction():
    from benchmarks.report import _transaction_rows

    j = {"back_to_back_ms": 110.0, "paced_ms": 30.0, "requests_ms": {"EndTxn": 5.0, "Produce": 6.0},
         "concurrent_per_transaction": 2.5, "concurrent_after_gap": {"0.05": 1.0, "0.1": 0.0, "0.5": 0.0}}
    rows = _transaction_rows(j)
    assert rows[1][2] == "Produce 6.0, EndTxn 5.0"  # the slowest request first
    assert rows[2][4] == _transaction_rows({**j, "concurrent_after_gap": {"0.1": 0.0}})[2][4] != \
        _transaction_rows({**j, "concurrent_after_gap": {"0.1": 0.0, "0.3": 1.8}})[2][4]
    assert _transaction_rows(None) == []  # a bench file from before figure j
