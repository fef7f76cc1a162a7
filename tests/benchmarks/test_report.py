"""The bench's headline keys in runs/benchmark.json."""

from benchmarks.report import headline


def _figures(router_in_process: dict | None) -> dict:
    figures = {"b_stages": {"router": {"per_s": {"median": 500.0}}}, "e_paced": {"p99_ms": 812.0},
               "a_pipeline": {"ratio": 0.47}}
    return figures if router_in_process is None else {**figures, "router": router_in_process}


def test_the_headline_keys():
    assert headline(_figures({"per_s": 5000.0})) == {"latency_p99_ms": 812.0, "router_stage_ratio": 0.1,
                                                     "pipeline_ratio": 0.47}


def test_no_router_ratio_without_its_in_process_rate():
    """--code skips the in-process figures: the ratio is missing, not made up."""
    assert headline(_figures(None))["router_stage_ratio"] is None
