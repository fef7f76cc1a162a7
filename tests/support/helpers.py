"""Builders shared by the tests; the tiny model and its work folder live in benchmarks/tiny_model.py, which the
fault suite uses too."""

from __future__ import annotations

import ast
from pathlib import Path

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
