"""Figure e hop by hop, from the timings each prediction carries."""

import pytest

from benchmarks.stream_runs import HOPS, hop_latencies


def _row(produced: float, routed: float, started: float, finished: float, path: list[str]) -> dict:
    return {"timings": {"produced_at": produced, "routed_at": routed, "started_at": started, "finished_at": finished},
            "path": path}


def test_each_hop_is_timed_over_the_samples_answered_where_they_were_routed():
    rows = [_row(0.0, 0.010, 0.050, 0.060, ["edge"]), _row(1.0, 1.030, 1.090, 1.100, ["cloud"]),
            _row(2.0, 2.5, 4.0, 4.1, ["mobile", "cloud"])]  # escalated: its second hop holds the mobile pass
    hops = hop_latencies(rows)
    assert list(hops) == [name for name, _, _ in HOPS]
    first, second, third = hops.values()
    assert first["p50_ms"] == pytest.approx(20.0) and second["p50_ms"] == pytest.approx(50.0)
    assert third["p99_ms"] == pytest.approx(10.0, abs=1e-6)


def test_no_direct_samples_no_figures():
    assert all(h == {"p50_ms": None, "p99_ms": None} for h in hop_latencies([_row(0, 1, 2, 3, ["a", "b"])]).values())
