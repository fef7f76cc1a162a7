"""Capacity planning on hand-worked numbers: rates from a cost file and a bench file, the batch each role gets,
how many instances a rate needs, the partitions and the brokers (dimee/offline/capacity)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dimee.common.errors import DimeeError
from dimee.offline.capacity import Target, TierRate, from_cost_file, plan, with_bench
from dimee.offline.capacity.rates import Rates
from dimee.offline.capacity.sizing import QUEUED, ceiling, choose_batch, hop_ms, tier_loads

SHARES = {"mobile": 0.5, "edge": 0.3, "cloud": 0.2}


def cost_file(path: Path, ms: float = 2.0, threads: int = 1) -> Path:
    """A `dimee costs` file whose tiers run 2, 4 and 6 layers at `ms` per sample per layer."""
    tiers = [{"tier": tier, "layers": layers, "ms_per_layer": ms, "layer_ms": [ms] * layers, "embedding_ms": 0.1,
              "routed_bytes": 400.0, "prediction_bytes": 500.0}
             for tier, layers in (("mobile", 2), ("edge", 4), ("cloud", 6))]
    machine = {"platform": "Linux", "cpu": "test CPU", "cpu_count": 2, "torch_threads": threads, "torch": "2",
               "python": "3.11"}
    measured = {"date": "2026-12-03", "machine": machine, "model": "tiny", "num_layers": 6, "hidden_size": 8,
                "texts": "test", "samples": 8, "mean_tokens": 12.0, "batch_size": 8, "repeats": 1, "tiers": tiers}
    path.write_text(json.dumps({"lambda_m": 0.1, "measured": measured}))
    return path


def rates(router: float = 10_000.0) -> Rates:
    return Rates({"mobile": TierRate(250.0), "edge": TierRate(125.0), "cloud": TierRate(100.0, 5000.0)}, router,
                 400.0, 500.0, ("hand",))


def test_a_thread_does_a_thousand_ms_over_the_tiers_layers(tmp_path):
    one = from_cost_file(cost_file(tmp_path / "one.json"))
    assert {tier: rate.cpu_per_thread for tier, rate in one.tiers.items()} == pytest.approx(
        {"mobile": 250.0, "edge": 125.0, "cloud": 1000.0 / 12})  # 1000 / (layers × 2 ms)
    two = from_cost_file(cost_file(tmp_path / "two.json", threads=2))  # measured on 2 threads: half per thread
    assert two.tiers["mobile"].cpu_per_thread == pytest.approx(125.0)
    assert (one.routed_bytes, one.prediction_bytes) == (400.0, 500.0)


def test_a_cost_file_without_timings_is_one_line(tmp_path):
    hand_written = tmp_path / "cost.json"
    hand_written.write_text(json.dumps({"lambda_m": 0.1}))
    with pytest.raises(DimeeError, match="no `measured` section"):
        from_cost_file(hand_written)
    with pytest.raises(DimeeError, match="cannot read the cost file"):
        from_cost_file(tmp_path / "absent.json")


def test_bench_rates_replace_the_cost_files_per_thread(tmp_path):
    bench = tmp_path / "benchmark.json"
    bench.write_text(json.dumps({"machine": "host: 2 cores, x86_64", "router": {"per_s": 8000.0},
                                 "b_stages": {"worker-edge": {"per_s": {"median": 300.0, "min": 280, "max": 310}}}}))
    merged = with_bench(from_cost_file(cost_file(tmp_path / "c.json")), bench)
    assert merged.tiers["edge"].cpu_per_thread == pytest.approx(150.0)  # 300/s on 2 cores
    assert merged.tiers["mobile"].cpu_per_thread == pytest.approx(250.0)  # not in the bench: kept
    assert merged.router_per_thread == 8000.0
    assert [source.split(":")[0] for source in merged.sources] == ["CPU", "bench"]  # the router's too


def test_a_hop_waits_computes_and_commits():
    target = Target(100, SHARES, 5000, commit_ms=340, max_wait_ms=20)
    # 8 samples at 100/s compute for 80 ms; the record waits for a commit in flight (340) and its own (340)
    assert hop_ms(8, 100.0, target) == pytest.approx(20 + 80 + 340 + 340)
    # compute-bound: the batch in progress is the longer wait
    assert hop_ms(512, 1000.0, target) == pytest.approx(20 + 512 + 512 + 340)
    # while one transaction commits, QUEUED batches wait for the next: the commit caps a small batch's rate
    assert ceiling(8, 1e9, target) == pytest.approx(QUEUED * 8 / 0.34)
    assert ceiling(8, 100.0, target) == 100.0


def test_the_batch_is_the_smallest_the_commit_does_not_hold_back():
    target = Target(100, SHARES, 5000, commit_ms=340)  # the hand-worked figures below are for a 340 ms commit
    # 10,000/s needs B ≥ 10,000 × 0.34 s / 8 queued = 425: 512
    assert choose_batch("router", 10_000.0, target, 2500) == 512
    assert choose_batch("worker-cloud", 84.0, target, 2500) == 8
    # a budget the big batch misses: the largest batch that fits, commit-bound
    assert choose_batch("router", 10_000.0, target, hop_ms(256, 10_000.0, target)) == 256


def test_a_budget_below_two_commits_is_refused_with_what_would_fit():
    with pytest.raises(DimeeError, match="raise the budget or plan for --guarantee at-least-once"):
        plan(Target(1000, SHARES, 1000, commit_ms=340), rates())
    relaxed = plan(Target(1000, SHARES, 1000, commit_ms=8), rates())
    assert relaxed.p99_ms <= 1000


def test_instances_keep_the_headroom_and_partitions_leave_room_to_scale():
    sized = plan(Target(10_000, SHARES, 2500, audit_rate=0.0, headroom=0.3, burst=2.0), rates())
    cloud = sized.role("worker-cloud")
    assert cloud.load == pytest.approx(2000)
    assert cloud.instances == math.ceil(2000 / (100 * 0.7)) == 29
    assert cloud.max_instances == 58 and sized.partitions()["cloud"] == 58
    for role in sized.roles:
        assert role.utilisation <= 0.7 + 1e-9
        assert sized.partitions()[role.topic] >= max(3, role.instances)


def test_the_cloud_also_runs_the_audits_of_what_the_other_tiers_answered():
    loads = tier_loads(Target(1000, SHARES, 2500, audit_rate=0.05))
    assert loads == pytest.approx({"mobile": 500, "edge": 300, "cloud": 200 + 1000 * 0.05 * 0.8})


def test_a_gpu_tier_runs_at_its_measured_rate_and_needs_one():
    sized = plan(Target(100_000, SHARES, 2500, audit_rate=0.0, gpu_tiers=frozenset({"cloud"}),
                        commit_ms=340), rates())
    cloud = sized.role("worker-cloud")
    assert (cloud.device, cloud.max_batch) == ("cuda", 256)  # 5,000/s × 0.34 s / 8 = 212 → 256
    assert cloud.instances == math.ceil(20_000 / (5000 * 0.7)) == 6
    no_rate = Rates({**rates().tiers, "edge": TierRate(125.0)}, 10_000.0, 400.0, 500.0, ())
    with pytest.raises(DimeeError, match="--gpu-rate edge="):
        plan(Target(1000, SHARES, 2500, gpu_tiers=frozenset({"edge"})), no_rate)


def test_the_brokers_carry_samples_routed_records_and_predictions():
    sized = plan(Target(1000, SHARES, 2500, audit_rate=0.0, replication=3, broker_mb_s=50), rates())
    broker = sized.broker
    assert broker.records_per_s == pytest.approx(1000 + 1000 + 1000)  # samples, routed, predictions
    assert broker.write_mb_s == pytest.approx((2000 * 400 + 1000 * 500) / 1e6)
    assert broker.read_mb_s == pytest.approx(broker.write_mb_s + 1000 * 500 / 1e6)  # the dashboard too
    assert broker.brokers == 3
    big = plan(Target(1_000_000, SHARES, 2500, audit_rate=0.0, broker_mb_s=50), rates()).broker
    assert big.brokers == math.ceil(big.write_mb_s * 3 / (50 * 0.7))


@pytest.mark.parametrize(("shares", "says"), [
    ({"mobile": 0.5, "edge": 0.3}, "add up to 0.800"),
    ({"mobile": 1.0, "gpu": 0.1}, "between 0 and 1"),
    ({"mobile": 1.5}, "between 0 and 1"),
])
def test_shares_that_lose_samples_are_refused(shares, says):
    with pytest.raises(DimeeError, match=says):
        Target(1000, shares, 2500)
