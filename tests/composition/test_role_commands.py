"""What `dimee up` supervises comes from the role builders: every role once, in data-flow order."""

from pathlib import Path

from dimee.composition import roles
from dimee.method.tiers import TIER_NAMES


def test_up_runs_the_router_a_worker_per_tier_cheapest_first_and_the_sink():
    commands = roles.commands(Path("wd"), "DIMEE-F", Path("out.jsonl"), "INFO")
    assert [name for name, _ in commands] == ["router", *(f"worker-{tier}" for tier in TIER_NAMES), "sink"]
    assert [args[0] for _, args in commands] == ["route", *["work"] * len(TIER_NAMES), "sink"]
    assert all(["--tier", tier] == args[1:3] for tier, (_, args) in zip(TIER_NAMES, commands[1:-1], strict=True))
    assert commands[0][1][-2:] == ["--policy", "DIMEE-F"] and commands[-1][1][1:3] == ["--out", "out.jsonl"]
