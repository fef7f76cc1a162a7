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


def test_figure_j_says_whether_the_markers_are_written_before_the_next_transaction():
    from benchmarks.report import _transaction_rows

    j = {"back_to_back_ms": 110.0, "paced_ms": 30.0, "requests_ms": {"EndTxn": 5.0, "Produce": 6.0},
         "concurrent_per_transaction": 2.5, "concurrent_after_gap": {"0.05": 1.0, "0.1": 0.0, "0.5": 0.0}}
    rows = _transaction_rows(j)
    assert rows[1][2] == "Produce 6.0, EndTxn 5.0"  # the slowest request first
    assert rows[2][4] == _transaction_rows({**j, "concurrent_after_gap": {"0.1": 0.0}})[2][4] != \
        _transaction_rows({**j, "concurrent_after_gap": {"0.1": 0.0, "0.3": 1.8}})[2][4]
    assert _transaction_rows(None) == []  # a bench file from before figure j
