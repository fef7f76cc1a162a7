"""The bench's rounds on a fake machine that is busy for one of them: each in-process reference is measured
right before the stream figure it divides, in every round, so each round's ratio holds only what the stream
adds, however busy the machine was."""

import pytest

from benchmarks import streaming_benchmark
from benchmarks.report import headline, summarise
from benchmarks.stream_runs import Setup
from tests.benchmarks.fake_bench import TRUE, BusyMachine, with_paced

RECORDS = [{"id": "a", "text": "one"}]


def _rounds(monkeypatch, machine: BusyMachine, router: bool = True) -> dict:
    for name in ("compute_bound", "pipeline", "stage_by_stage", "scale_out"):
        monkeypatch.setattr(streaming_benchmark, name, getattr(machine, name))
    fake_router = type("FakeRouter", (), {"round": staticmethod(machine.router_round)})() if router else None
    return streaming_benchmark.stream_rounds(Setup(workdir=None, logs=None), RECORDS, deployment=None, rounds=3,
                                             router=fake_router)


def test_each_reference_is_measured_right_before_the_figure_it_divides(monkeypatch):
    machine = BusyMachine(loads=[1.0, 5.0, 2.0])
    runs = _rounds(monkeypatch, machine)
    for reference, stream in (("bound", "exactly-once"), ("router in-process", "stages")):
        right_after = [machine.calls[i + 1] for i, call in enumerate(machine.calls) if call == reference]
        assert right_after == [stream] * 3
    assert len(runs["router"]) == len(runs["stages"]) == 3
    figures = summarise(with_paced(runs))
    pipeline_ratio, router_ratio = TRUE["exactly-once"] / TRUE["bound"], TRUE["router"] / TRUE["router in-process"]
    assert figures["a_pipeline"]["ratio"] == pytest.approx({"median": pipeline_ratio, "min": pipeline_ratio,
                                                            "max": pipeline_ratio})
    assert figures["router"]["stage_ratio"] == pytest.approx({"median": router_ratio, "min": router_ratio,
                                                              "max": router_ratio})
    assert figures["router"]["per_s"]["min"] == TRUE["router in-process"] / 5  # the busy round, still paired
    assert headline(figures | {"e_paced": {"p99_ms": 90.0}})["router_stage_ratio"] == pytest.approx(router_ratio)


def test_without_the_in_process_router_no_router_rounds(monkeypatch):
    """--code: the roles of another checkout, no in-process figures."""
    machine = BusyMachine(loads=[1.0, 1.0, 1.0])
    runs = _rounds(monkeypatch, machine, router=False)
    assert runs["router"] == [] and "router in-process" not in machine.calls
    assert len(runs["stages"]) == 3


def test_the_in_process_router_runs_one_round_at_a_time(workdir):
    """The real router, set up once and timed a round at a time (the embedded store here, Redis in the bench):
    each round gives what figure c is reduced from."""
    from benchmarks.report import router_figures
    from benchmarks.router_benchmark import InProcessRouter

    router = InProcessRouter(workdir, "memory://bench-rounds", samples=64)
    try:
        rounds = [router.round(), router.round()]
    finally:
        router.close()
    assert all(r["samples"] == 64 and r["per_s"] > 0 and r["state"] == "memory" for r in rounds)
    figures = router_figures(rounds)
    assert figures["per_s"]["min"] <= figures["per_s"]["median"] <= figures["per_s"]["max"]
    assert set(figures["parts_us"]) == set(rounds[0]["parts_s"]) >= {"tokenise", "embed", "state update"}
