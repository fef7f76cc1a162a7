"""The benchmark's rounds reduced to figures (median and range), ratios and the goals of issue 11, and the
markdown table `make bench` writes.

A ratio is taken within each round, of two figures measured side by side in it, and reported as its median and
range over rounds: a figure of one round divided by one of another would hold whatever else the machine was
doing in between (a bound measured on a busy machine read 30–156/s in one run)."""

from __future__ import annotations

import statistics
from pathlib import Path

from dimee.method.tiers import TIER_NAMES as TIERS
from dimee.streaming.config import setting_default

MAX_WAIT_S = setting_default("max_wait_ms") / 1000  # the workers' default --max-wait-ms


def spread(values: list[float | None]) -> dict:
    """Median, min and max of the values that were measured."""
    known = [v for v in values if v is not None]
    if not known:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(known), "min": min(known), "max": max(known)}


def per_round(tops: list[dict], bottoms: list[dict]) -> dict:
    """Each round's top["per_s"] ÷ bottom["per_s"], the two measured in the same round, as a spread over rounds."""
    ratios = [None if t["per_s"] is None or not b["per_s"] else t["per_s"] / b["per_s"]
              for t, b in zip(tops, bottoms, strict=True)]
    return spread(ratios)


def router_figures(rounds: list[dict]) -> dict:
    """Figure c from the in-process router's rounds: samples/s over rounds and the µs per sample of each part
    (median over rounds)."""
    first = rounds[0]
    return {"per_s": spread([r["per_s"] for r in rounds]), "state": first["state"], "batch": first["batch"],
            "parts_us": {name: statistics.median(r["parts_s"][name] for r in rounds) / first["samples"] * 1e6
                         for name in first["parts_s"]}}


def summarise(runs: dict) -> dict:
    bound = spread([r["per_s"] for r in runs["bound"]])
    eos = spread([r["per_s"] for r in runs["exactly_once"]])
    alo = spread([r["per_s"] for r in runs["at_least_once"]])
    stage_names = sorted({name for stages in runs["stages"] for name in stages})
    stages = {name: {"per_s": spread([s[name]["per_s"] for s in runs["stages"] if name in s]),
                     "efficiency": spread([s[name]["efficiency"] for s in runs["stages"] if name in s])}
              for name in stage_names}
    batch_compute = [s[name].get("batch_compute_s") for s in runs["stages"] for name in s if name.startswith("worker")]
    slowest_batch = max((b for b in batch_compute if b is not None), default=None)
    one, two = spread([r["per_s"] for r in runs["one_worker"]]), spread([r["per_s"] for r in runs["two_workers"]])
    threaded = spread([r["per_s"] for r in runs["one_worker_two_threads"]])
    pipelines = runs["exactly_once"] + runs["at_least_once"]
    roles = sorted({name for run in pipelines for name in run["ready_s"]})
    paced, paced_alo = runs["paced"][0], runs["paced_at_least_once"][0]
    router = {}
    if runs.get("router"):  # measured in-process in every round, right before the stages (absent with --code)
        router = {"router": router_figures(runs["router"]) | {
            "stage_ratio": per_round([s["router"] for s in runs["stages"]], runs["router"])}}
    return router | {
        "a_pipeline": {"pipeline_per_s": eos, "bound_per_s": bound,
                       "ratio": per_round(runs["exactly_once"], runs["bound"]),
                       "tier_shares": runs["bound"][0]["shares"]},
        "b_stages": stages,
        "e_paced": {"rate": paced["samples"] / max(paced["seconds"], 1e-9), "p50_ms": paced["p50_ms"],
                    "p99_ms": paced["p99_ms"], "saturated_p99_ms": spread([r["p99_ms"] for r in runs["exactly_once"]]),
                    "p99_goal_ms": None if slowest_batch is None else 1000 * (MAX_WAIT_S + 2 * slowest_batch),
                    "at_least_once_p50_ms": paced_alo["p50_ms"], "at_least_once_p99_ms": paced_alo["p99_ms"],
                    "hops": paced.get("hops", {}), "at_least_once_hops": paced_alo.get("hops", {})},
        "f_guarantees": {"exactly_once_per_s": eos, "at_least_once_per_s": alo,
                         "ratio": per_round(runs["exactly_once"], runs["at_least_once"])},
        "g_scale_out": {"tier": runs["busiest"][0], "one_worker_per_s": one, "two_workers_per_s": two,
                        "one_worker_two_threads_per_s": threaded,
                        "ratio": per_round(runs["two_workers"], runs["one_worker"]),
                        "two_threads_ratio": per_round(runs["one_worker_two_threads"], runs["one_worker"])},
        "h_start_stop": {role: {"ready_s": spread([s[role]["ready_s"] for s in runs["stages"] if role in s]),
                                "exit_s": spread([s[role]["exit_s"] for s in runs["stages"] if role in s])}
                         for role in stage_names},
        "h_pipeline_start_s": {role: spread([r["ready_s"].get(role) for r in pipelines]) for role in roles},
        "stalled_runs": runs.get("stalled", []),
        "i_peak_rss_mb": {role: max((s[role]["peak_rss_mb"] or 0) for s in runs["stages"] if role in s)
                          for role in stage_names},
    }


def headline(figures: dict) -> dict:
    """The keys that follow the stream's pace from run to run: p99 latency at half load (exactly-once), the
    router alone on Kafka against its own loop in-process (figure c; absent with --code, which skips it) and
    the pipeline against the in-process bound; each ratio the median over rounds of that round's ratio."""
    return {"latency_p99_ms": figures["e_paced"]["p99_ms"],
            "router_stage_ratio": figures.get("router", {}).get("stage_ratio", {}).get("median"),
            "pipeline_ratio": figures["a_pipeline"]["ratio"]["median"]}


def _latency_rows(e: dict) -> list[tuple[str, str, str, str, str]]:
    """Figure e: at half load in both guarantees, hop by hop, and saturated."""
    return [
        ("e", f"latency at {e['rate']:.0f}/s (half load): p50, p99 ms", f"{e['p50_ms']:.0f}, {e['p99_ms']:.0f}",
         f"p99 ≤ {_fmt(e['p99_goal_ms'], 0)}", _met(_at_most(e["p99_ms"], e["p99_goal_ms"]))),
        ("e", "the same rate, at-least-once: p50, p99 ms",
         f"{e['at_least_once_p50_ms']:.0f}, {e['at_least_once_p99_ms']:.0f}", "p99 ≤ 250",
         _met(_at_most(e["at_least_once_p99_ms"], 250))),
        *_hop_rows(e),
        ("e", "latency saturated (all produced at once): p99 ms", _range(e["saturated_p99_ms"], 0), "", ""),
    ]


def _transaction_rows(j: dict | None) -> list[tuple[str, str, str, str, str]]:
    """Figure j: one exactly-once transaction, request by request."""
    if not j:
        return []
    requests = ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(j["requests_ms"].items(), key=lambda r: -r[1]))
    gaps = ", ".join(f"{1000 * float(gap):.0f} ms: {n:.1f}" for gap, n in j["concurrent_after_gap"].items())
    return [("j", "a transaction of 64 + offsets: back to back, 0.5 s apart (ms)",
             f"{j['back_to_back_ms']:.0f}, {j['paced_ms']:.0f}", "", ""),
            ("j", "its requests (median ms)", requests, "", ""),
            ("j", "CONCURRENT_TRANSACTIONS answers per transaction: back to back; begun a gap after the last",
             f"{j['concurrent_per_transaction']:.1f}; {gaps}", "0 from 100 ms", _met(all(
                 n == 0 for gap, n in j["concurrent_after_gap"].items() if float(gap) >= 0.1)))]


def _hop_rows(paced: dict) -> list[tuple[str, str, str, str, str]]:
    """Figure e's latency hop by hop: exactly-once; at-least-once (p50, p99 ms)."""
    def cell(hop: dict | None) -> str:
        return "—" if not hop else f"{_fmt(hop['p50_ms'], 0)}, {_fmt(hop['p99_ms'], 0)}"

    return [("e", f"  hop: {name} — exactly-once; at-least-once: p50, p99 ms",
             f"{cell(hop)}; {cell(paced['at_least_once_hops'].get(name))}", "", "")
            for name, hop in paced["hops"].items()]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _range(values: dict, digits: int = 1) -> str:
    if values["median"] is None:
        return "—"
    return f"{_fmt(values['median'], digits)} ({_fmt(values['min'], digits)}–{_fmt(values['max'], digits)})"


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def _at_least(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _at_most(value: float | None, goal: float | None) -> bool | None:
    return None if value is None or goal is None else value <= goal


def write_markdown(figures: dict, path: Path) -> str:
    a, f, g, e = figures["a_pipeline"], figures["f_guarantees"], figures["g_scale_out"], figures["e_paced"]
    rows = [
        ("a", "pipeline (exactly-once), samples/s", _range(a["pipeline_per_s"]), "", ""),
        ("a", "in-process compute bound, samples/s", _range(a["bound_per_s"]), "", ""),
        ("a", "pipeline ÷ bound, each round's", _range(a["ratio"], 2), "≥ 0.90",
         _met(_at_least(a["ratio"]["median"], 0.9))),
    ]
    for name, stage in figures["b_stages"].items():
        eff = stage["efficiency"]["median"]
        rows.append(("b", f"{name} alone: records/s, efficiency", f"{_range(stage['per_s'])}, {_fmt(eff, 2)}",
                     "≥ 0.90", _met(_at_least(eff, 0.9))))
    if "router" in figures:
        router = figures["router"]
        rows.append(("c", f"router, 1 thread, adaptive, {router['state']}: samples/s", _range(router["per_s"], 0),
                     "≥ 10,000", _met(_at_least(router["per_s"]["median"], 10_000))))
        rows.append(("c", "router alone on Kafka (b) ÷ in-process, each round's", _range(router["stage_ratio"], 2),
                     "", ""))
        parts = ", ".join(f"{k} {v:.1f}" for k, v in router["parts_us"].items())
        rows.append(("c", "router µs per sample", parts, "", ""))
    for tier, row in figures.get("early_exit", {}).items():
        rows.append(("d", f"{tier}, 1 thread: batch-1 loop; one pass per batch of {figures['batch']}; the "
                     "worker's length-sorted passes (samples/s)", f"{row['batch1_per_s']:.0f}; "
                     f"{row['one_pass_per_s']:.0f} ({row['one_pass_speedup']:.2f}×); {row['worker_per_s']:.0f} "
                     f"({row['worker_speedup']:.2f}×)", "", ""))
    rows += [
        *_latency_rows(e),
        ("f", "exactly-once vs at-least-once, samples/s",
         f"{_range(f['exactly_once_per_s'])} vs {_range(f['at_least_once_per_s'])}; each round's ratio "
         f"{_range(f['ratio'], 2)}", "", ""),
        ("g", f"{g['tier']} tier: 1 worker, 2 workers (1 thread each), samples/s",
         f"{_range(g['one_worker_per_s'])}, {_range(g['two_workers_per_s'])}", "", ""),
        ("g", "2 workers ÷ 1 worker, each round's", _range(g["ratio"], 2), "≥ 1.80",
         _met(_at_least(g["ratio"]["median"], 1.8))),
        ("g", "1 worker with 2 threads ÷ 1 thread, each round's", _range(g["two_threads_ratio"], 2), "", ""),
    ]
    for role, times in figures["h_start_stop"].items():
        ready, gone = times["ready_s"]["max"], times["exit_s"]["max"]
        rows.append(("h", f"{role} alone: launch → ready, SIGTERM → exit (s, worst)",
                     f"{_fmt(ready, 2)}, {_fmt(gone, 2)}", "≤ 5, ≤ 2",
                     _met(None if ready is None else ready <= 5 and (gone or 0) <= 2)))
    together = ", ".join(f"{role} {_fmt(t['median'], 1)}" for role, t in figures["h_pipeline_start_s"].items())
    rows.append(("h", "all five launched at once: launch → ready (s, median)", together, "", ""))
    for role, mb in figures["i_peak_rss_mb"].items():
        goal = 400 if role == "router" else None
        rows.append(("i", f"{role}: peak resident MB", _fmt(mb, 0), "≤ 400" if goal else "",
                     _met(_at_most(mb, goal)) if goal else ""))
    rows += _transaction_rows(figures.get("j_transaction"))
    if figures["stalled_runs"]:
        rows.append(("", "runs that stalled and were run again", str(len(figures["stalled_runs"])), "0",
                     _met(False)))
    shares = " / ".join(f"{t} {100 * a['tier_shares'].get(t, 0):.0f}%" for t in TIERS)
    text = "\n".join([
        f"# dimee benchmark — {figures['machine']}", "",
        f"{figures['started']}; roles from {figures['code']}; {figures['samples']} rt-sentences test samples, "
        f"policy {figures['policy']} (start tiers {shares}), worker batch {figures['batch']}, "
        f"{figures['rounds']} interleaved rounds: median (min–max); a ratio is taken within each round, of "
        "figures measured side by side in it.", "",
        "| | figure | measured | goal | met |", "| --- | --- | --- | --- | --- |",
        *(f"| {k} | {name} | {value} | {goal} | {met} |" for k, name, value, goal, met in rows), ""])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
