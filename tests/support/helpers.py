"""Builders shared by the tests; the tiny model and its work folder live in benchmarks/tiny_model.py, which the
fault suite uses too."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import ClassVar

from benchmarks.tiny_model import (  # noqa: F401  (re-exported: the tests' one import for builders)
    WORDS,
    saved_tiny_model,
    sentences,
    stream_records,
    tiny_model,
    tiny_tokenizer,
    tiny_workdir,
)


def deployment(workdir: Path, cal, policy: str = "DIMEE-F"):
    """What the roles serve in a test: the tiny workdir, its calibration and a named policy."""
    from dimee.common.workdir import Workdir
    from dimee.method.routing_policy import get
    from dimee.streaming.deployment import Deployment

    return Deployment(Workdir(workdir), cal, get(policy))


def context(broker, topics, **options):
    """A StageContext over an in-memory broker (options: stop, limits, events, settings, instance_id)."""
    from dimee.streaming.stage import StageContext

    return StageContext(broker, topics, **options)


def modules_imported_by(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter has imported after running `code` (a start-up's import bill)."""
    import subprocess
    import sys

    probe = f"{code}\nimport sys; print(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


class RecordingSupervisor:
    """Stands in for `dimee up`'s Supervisor (monkeypatched over it): records the environment `up` hands its
    roles, starts nothing."""

    env: ClassVar[dict[str, str]] = {}  # the last one recorded, read by the test

    def __init__(self, programs: list, env: dict[str, str]) -> None:
        RecordingSupervisor.env = env

    def run(self, stop: object) -> int:
        return 0


def dies_on_second_delivery(stage, dying) -> None:
    """Wrap an opened stage's delivery so that its second group of outputs goes to `dying`, which raises (a
    process killed mid-delivery), instead of being delivered."""
    deliver, groups = stage.delivery.deliver, []

    def deliver_or_die(outputs) -> None:
        groups.append(outputs)
        if len(groups) == 2:
            dying(outputs)
        deliver(outputs)

    stage.delivery.deliver = deliver_or_die
