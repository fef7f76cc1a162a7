"""`dimee plan`: how many of each role, how many partitions and how big the brokers a target rate needs, from
measured rates; and the Helm chart's values for it (docs/operations.md, "Past one machine")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from dimee.cli import options as opt
from dimee.cli.app import app
from dimee.common.errors import DimeeError
from dimee.common.workdir import Workdir
from dimee.method.tiers import TIER_NAMES
from dimee.offline.capacity.sizing import COMMIT_MS, Plan, Target

PlanGuarantee = Literal["exactly-once", "at-least-once"]


def _knob(help_text: str, **kwargs: object) -> typer.models.OptionInfo:
    return typer.Option(help=help_text, rich_help_panel="Assumptions", **kwargs)  # type: ignore[arg-type]


def tier_numbers(text: str, option: str) -> dict[str, float]:
    """mobile=0.5,edge=0.3,cloud=0.2 as {tier: number}; anything else is one line naming the option."""
    pairs: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        tier, sep, number = item.partition("=")
        try:
            value = float(number)
        except ValueError:
            value = None
        if not sep or tier.strip() not in TIER_NAMES or value is None or value < 0:
            raise DimeeError(f"{option} {text!r}: give TIER=NUMBER pairs, e.g. mobile=0.5,edge=0.3,cloud=0.2 "
                             f"(tiers: {', '.join(TIER_NAMES)})")
        pairs[tier.strip()] = value
    return pairs


def table(plan: Plan) -> str:
    """The roles, then the topics and the brokers, then the assumptions and where the rates came from."""
    t = plan.target
    lines = [f"target: {t.rate:,.0f} samples/s, tier shares {_shares(t.shares)}, p99 budget {t.p99_ms:,.0f} ms, "
             f"{t.headroom:.0%} headroom, autoscaling up to {t.burst:g}x",
             f"{'role':<14} {'device':>6} {'threads':>7} {'batch':>5} {'load/s':>9} {'per pod/s':>9} {'pods':>5} "
             f"{'busy':>5} {'max pods':>8} {'hop p99 ms':>10}"]
    for r in plan.roles:
        lines.append(f"{r.role:<14} {r.device:>6} {r.threads:>7} {r.max_batch:>5} {r.load:>9,.0f} "
                     f"{r.per_instance:>9,.0f} {r.instances:>5} {r.utilisation:>5.0%} {r.max_instances:>8} "
                     f"{r.hop_p99_ms:>10,.0f}")
    b = plan.broker
    lines += [f"partitions (PREFIX.TOPIC): {', '.join(f'{topic} {n}' for topic, n in plan.partitions().items())} "
              f"({b.partitions} in all, x{t.replication} replicas)",
              f"predicted p99 (router hop + slowest tier's hop): {plan.p99_ms:,.0f} ms of {t.p99_ms:,.0f}",
              f"brokers: {b.records_per_s:,.0f} records/s, {b.write_mb_s:,.1f} MB/s written (x{t.replication} "
              f"replicated), {b.read_mb_s:,.1f} MB/s read, up to {b.transactions_per_s:,.0f} transactions/s: "
              f"{b.brokers} brokers at {t.broker_mb_s:g} MB/s of replicated writes each (an assumption: "
              "--broker-mb-s) with the headroom kept",
              *(f"rates from {source}" for source in plan.sources)]
    return "\n".join(lines)


def _shares(shares: dict[str, float]) -> str:
    return " / ".join(f"{tier} {shares.get(tier, 0):.0%}" for tier in TIER_NAMES)


@app.command("plan")
def plan_cmd(
    rate: Annotated[float, typer.Option(min=0.001, help="Target samples/s into PREFIX.samples.")],
    shares: Annotated[str, typer.Option(help="Share of the samples each tier's workers take in, as the policy "
                                             "routes (and escalates) them: `dimee study`'s tier shares, e.g. "
                                             "mobile=0.5,edge=0.3,cloud=0.2.")],
    p99_ms: Annotated[float, typer.Option(min=1.0, help="Latency budget, produce → prediction, ms (p99).")],
    costs: Annotated[Path, typer.Option(help="Cost file `dimee costs` wrote: each tier's measured ms per layer "
                                             "(CPU) and message bytes.")] = Workdir(opt.DEFAULT_WORKDIR).cost_model,
    bench: Annotated[Path | None, typer.Option(help="runs/benchmark.json of `make bench`: its measured worker "
                                                    "and router rates replace the cost file's.")] = None,
    gpu_rate: Annotated[list[str] | None, typer.Option(help="TIER=SAMPLES_PER_S: run that tier on GPUs, one "
                                                            "worker doing this many (measure it with "
                                                            "benchmarks/device_benchmark.py). Repeatable.")] = None,
    guarantee: Annotated[PlanGuarantee, _knob("exactly-once (a commit per batch cycle) or at-least-once.")
                         ] = "exactly-once",
    commit_ms: Annotated[float | None, _knob(
        f"One commit, ms (default: kafka-python's measured, {COMMIT_MS['exactly-once']:g} exactly-once, "
        f"{COMMIT_MS['at-least-once']:g} at-least-once).", min=0.1)] = None,
    threads: Annotated[int, _knob("Threads per CPU worker.", min=1)] = 1,
    router_threads: Annotated[int, _knob("Threads per router.", min=1)] = 1,
    headroom: Annotated[float, _knob("Share of every role's capacity kept spare.", min=0.0, max=0.9)] = 0.3,
    burst: Annotated[float, _knob("How far past the target autoscaling may go; sets the partitions.", min=1.0)
                     ] = 2.0,
    audit_rate: Annotated[float, _knob("Share of lower tiers' answers the cloud checks again.", min=0.0,
                                       max=1.0)] = Target.audit_rate,
    replication: Annotated[int, _knob("Replicas of each topic.", min=1)] = 3,
    broker_mb_s: Annotated[float, _knob("MB/s of replicated writes one broker takes (not measured here: use "
                                        "your brokers' figure).", min=0.1)] = 50.0,
    values: Annotated[Path, typer.Option(help="Where to write the Helm values (deploy/helm/dimee).")
                      ] = Path("runs/plan-values.yaml"),
) -> None:
    """Size a deployment for a target rate from measured rates: partitions per topic, workers per tier, their
    threads and batches, routers, sinks and brokers; print it and write the Helm chart's values for it
    (docs/operations.md, "Past one machine", says how it sizes and what it assumes)."""
    from dimee.offline.capacity import from_cost_file, plan, with_bench, write_values

    gpu = tier_numbers(",".join(gpu_rate or []), "--gpu-rate")
    rates = from_cost_file(costs)
    rates = with_bench(rates, bench) if bench is not None else rates
    rates = rates.with_gpu(gpu) if gpu else rates
    target = Target(rate, tier_numbers(shares, "--shares"), p99_ms, audit_rate, frozenset(gpu), threads,
                    router_threads, headroom, burst, commit_ms or COMMIT_MS[guarantee], replication=replication,
                    broker_mb_s=broker_mb_s)
    sized = plan(target, rates)
    typer.echo(table(sized))
    header = f"dimee plan: {rate:,.0f} samples/s, p99 {p99_ms:,.0f} ms, {guarantee}\n" + "\n".join(sized.sources)
    try:
        write_values(values, sized, guarantee, header)
    except OSError as exc:
        raise DimeeError(f"cannot write the values to {values}: {exc.strerror or exc}") from exc
    typer.echo(f"values written to {values}: helm install dimee deploy/helm/dimee -f YOUR-VALUES -f {values}")
