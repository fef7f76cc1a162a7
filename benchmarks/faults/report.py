"""The figures of a scenario run: its row, printed and in the final table."""

from __future__ import annotations

import sys
import time
from collections import Counter

from benchmarks.faults.cluster import say
from benchmarks.faults.hostile import hostile_outcomes
from benchmarks.faults.reading import Observed, committed_offsets, observe, reason_of
from benchmarks.faults.runs import Run
from dimee.method.tiers import TIER_NAMES as TIERS


def finish(run: Run) -> dict:
    """Stop every role (SIGTERM), read the topics and Redis, and make the scenario's row."""
    codes = run.sup.shutdown()
    bad = {n: c for n, c in codes.items() if c != 0}
    if bad:
        run.notes.append(f"final SIGTERM exit codes not 0: {bad}")
    observed = observe(run.suite, run.prefix)
    row = figures(run, observed)
    row["final_sigterm_codes"] = codes
    return row


def figures(run: Run, observed: Observed) -> dict:
    valid = run.valid_ids()
    lost = [i for i in valid if observed.predictions[i] == 0]
    unique = len(observed.predictions)
    reasons = Counter(f"{d.get('stage')}: {reason_of(str(d.get('error', '')))}" for d in observed.letters)
    sent_records = run.extra.get("sent", [])
    committed = committed_offsets(run.suite.cluster.kafka, run.prefix) if sent_records else {}
    outcomes = hostile_outcomes(sent_records, observed, committed)
    sent = [o for o in outcomes if o["sent"]]
    row = {
        "scenario": run.key, "title": run.title, "prefix": run.prefix, "produced": len(valid),
        "reached_samples_topic": sum(i in observed.samples for i in valid),
        "delivered_unique": unique, "lost": len(lost), "lost_ids": lost[:50],
        "lost_never_in_samples_topic": sum(i not in observed.samples for i in lost),
        "duplicates": sum(observed.predictions.values()) - unique,
        "dead_letters": len(observed.letters), "dead_letter_reasons": dict(reasons.most_common()),
        "samples_dead_lettered": samples_dead_lettered(observed.letters, valid, run.prefix),
        "mean_cost": mean_cost(observed.costs, valid),
        "malformed_sent": len(sent), "malformed_accounted": sum(o["accounted"] for o in sent),
        "hostile": outcomes, "centroid_delta": observed.centroids, "routed_unique": len(observed.routed),
        "unexpected_exits": len(run.sup.exits), "exits": [vars(e) for e in run.sup.exits],
        "suite_kills": run.sup.kills, "stalls": len(run.stalls), "stall_details": run.stalls,
        "notes": run.notes, "wall_s": round(time.monotonic() - run.started, 1),
    }
    row.update({k: v for k, v in run.extra.items() if k != "sent"})
    return row


def samples_dead_lettered(letters: list[dict], valid: list[str], prefix: str) -> int:
    """Dead letters of the scenario's valid samples: keyed by their ids, from a topic a sample or its answer
    travels (samples, a tier's, predictions; not audits, which (k) forges under sample ids). A sample refused
    because of a fault, the pipeline's state among them, never because of what it is."""
    ids = set(valid)
    topics = {f"{prefix}.{name}" for name in ("samples", *TIERS, "predictions")}
    return sum(letter.get("key") in ids and letter.get("topic") in topics for letter in letters)


def mean_cost(costs: dict[str, float], valid: list[str]) -> float | None:
    """The mean cost of the valid samples' predictions (None: none answered)."""
    answered = [costs[i] for i in valid if i in costs]
    return round(sum(answered) / len(answered), 6) if answered else None


def print_row(row: dict) -> None:
    say(f"({row['scenario']}) {row['title']}: produced {row['produced']} ({row['reached_samples_topic']} reached "
        f"the samples topic), delivered unique "
        f"{row['delivered_unique']}, lost {row['lost']}, duplicates {row['duplicates']}, dead letters "
        f"{row['dead_letters']} ({row['samples_dead_lettered']} of valid samples), mean cost {row['mean_cost']}, "
        f"centroid Δ {row['centroid_delta']} vs {row['routed_unique']} routed ids, "
        f"unexpected exits {row['unexpected_exits']}, stalls {row['stalls']}, {row['wall_s']} s")
    if row["lost"]:
        print(f"      of the {row['lost']} lost, {row['lost_never_in_samples_topic']} never reached the samples topic "
              f"(lost by the producer); first: {row['lost_ids'][:3]}")
    for reason, count in row["dead_letter_reasons"].items():
        print(f"      dead letter x{count}: {reason}")
    for outcome in row["hostile"]:
        if not outcome["accounted"]:
            print(f"      NOT ACCOUNTED ({outcome['kind']}, expect {outcome['expect']}): {outcome['outcome']}")
    for exit_ in row["exits"]:
        print(f"      exit {exit_['role']} code {exit_['code']} at {exit_['at_s']} s: {' | '.join(exit_['excerpt'])}")
    for note in [*row["notes"], *row["stall_details"]]:
        print(f"      {note}")
    sys.stdout.flush()


HEADER = ("| scenario | produced | reached samples topic | delivered unique | lost | duplicates | dead letters "
          "| samples dead-lettered | malformed accounted | centroid Δ / routed ids | unexpected exits | stalls "
          "| wall s |")


def table(rows: list[dict]) -> str:
    lines = [HEADER, "|" + " --- |" * 13]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['scenario']} | suite error: {row['error']} |" + " |" * 11)
            continue
        top = "; ".join(f"{n}× {r[:48]}" for r, n in list(row["dead_letter_reasons"].items())[:3])
        more = len(row["dead_letter_reasons"]) - 3
        letters = f"{row['dead_letters']}" + (f" ({top}{f'; +{more} more reasons' if more > 0 else ''})" if top
                                               else "")
        malformed = f"{row['malformed_accounted']}/{row['malformed_sent']}" if row["malformed_sent"] else "–"
        lines.append(f"| {row['scenario']} {row['title']} | {row['produced']} | {row['reached_samples_topic']} | "
                     f"{row['delivered_unique']} | "
                     f"{row['lost']} | {row['duplicates']} | {letters} | {row['samples_dead_lettered']} | "
                     f"{malformed} | "
                     f"{row['centroid_delta']} / {row['routed_unique']} | {row['unexpected_exits']} | "
                     f"{row['stalls']} | {row['wall_s']} |")
    return "\n".join(lines)
