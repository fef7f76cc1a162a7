"""`python -m benchmarks.faults`: the suite's options, its scenarios one by one (each bounded) and the table."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import faults
from benchmarks.faults.cluster import Cluster, say
from benchmarks.faults.report import finish, print_row, table
from benchmarks.faults.runs import Run, Suite
from benchmarks.faults.scenarios import SCENARIOS


def run_scenario(suite: Suite, scenario: Callable[[Suite], Run]) -> dict:
    """One scenario, bounded; its row (or its error: the suite's own failure, reported and survived)."""
    holder: dict = {}
    known = len(suite.runs)

    def target() -> None:
        try:
            holder["run"] = scenario(suite)
        except Exception as exc:
            holder["error"] = f"{exc.__class__.__name__}: {exc}"

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(suite.args.scenario_limit_s)
    if "run" not in holder:
        error = holder.get("error", f"scenario did not finish in {suite.args.scenario_limit_s} s")
        say(f"   suite error in {scenario.__name__}: {error}")
        for run in suite.runs[known:]:
            run.sup.shutdown()  # no leftovers
        return {"scenario": scenario.__name__, "error": error}
    try:
        row = finish(holder["run"])
    except Exception as exc:  # the suite's own failure while measuring: reported, the next scenario runs
        holder["run"].sup.shutdown()
        say(f"   suite error measuring {scenario.__name__}: {exc.__class__.__name__}: {exc}")
        return {"scenario": scenario.__name__, "error": f"{exc.__class__.__name__}: {exc}"}
    print_row(row)
    return row


def prepare(args: argparse.Namespace) -> Suite:
    cluster = Cluster.from_env()
    folder = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir) if args.workdir else None
    if workdir is None:
        from benchmarks.tiny_model import tiny_workdir

        workdir = tiny_workdir(folder / "tiny-workdir")
        say(f"tiny workdir (no download): {workdir}")
    from dimee.streaming.deployment import Deployment

    cal = json.loads((workdir / "calibration.json").read_text())
    state_id = Deployment.load(workdir, "DIMEE-F").state_id  # the Redis namespace the routers use
    return Suite(cluster, workdir.resolve(), folder.resolve(), state_id, list(cal["pool_sizes"]), args,
                 random.Random(args.seed))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=faults.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of "
                        + ",".join(SCENARIOS))
    parser.add_argument("--samples", type=int, default=3000, help="samples in (a), the kill storm")
    parser.add_argument("--rate", type=float, default=40.0, help="samples/s in (a)")
    parser.add_argument("--kills", type=int, default=12, help="SIGKILLs in (a)")
    parser.add_argument("--other-samples", type=int, default=600,
                        help="samples in (c)-(h) and (j)-(n) (each pipeline of (l))")
    parser.add_argument("--hostile-valid", type=int, default=200, help="valid samples around the hostile ones (b)")
    parser.add_argument("--skip-hostile", default="", help="(b) leave out the hostile kinds whose names contain "
                                                            "any of these comma-separated words")
    parser.add_argument("--outage-s", type=float, default=30.0,
                        help="how long Redis / Kafka stay down in (c), Redis refuses writes in (n)")
    parser.add_argument("--deadline-s", type=float, default=150.0,
                        help="after the stream (and its fault) ends, how long until unanswered samples are a stall")
    parser.add_argument("--scenario-limit-s", type=float, default=900.0, help="hard limit per scenario")
    parser.add_argument("--workdir", default=None, help="a trained workdir (e.g. artifacts/demo); default: a "
                                                        "tiny model built on the spot")
    parser.add_argument("--guarantee", default=os.environ.get("DIMEE_GUARANTEE", "auto"),
                        choices=["auto", "exactly-once", "at-least-once"])
    parser.add_argument("--seed", type=int, default=0, help="random choices of the kill storm")
    parser.add_argument("--out", default="runs/faults", help="folder for role logs and stream files")
    parser.add_argument("--json", default=None, help="write every figure here (e.g. runs/faults.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        sys.exit(f"faults: unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    suite = prepare(args)
    started = time.monotonic()
    rows = [run_scenario(suite, scenario) for key in chosen for scenario in SCENARIOS[key]]
    wall = round(time.monotonic() - started, 1)
    print(f"\n## dimee fault injection ({', '.join(chosen)}), {wall} s\n\n{table(rows)}\n", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "wall_s": wall,
                                               "scenarios": rows}, indent=2, default=str))
        say(f"figures written to {args.json}")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
