"""`dimee seed` and the pipeline's keys (issue 28): a seed writes and resets only its own pipeline's state
(`--topic-prefix`), and `--only-missing` resets a threshold control that is not one, keeping a sound one."""

from __future__ import annotations

from dimee.state.base import Verdict, namespace
from dimee.state.memory import shared_store
from typer.testing import CliRunner

from dimee.cli import app
from dimee.method.control import Control, ControlRule
from dimee.streaming.deployment import Deployment


def _seed(workdir, *more: str) -> str:
    result = CliRunner().invoke(app, ["seed", "--workdir", str(workdir), "--state", "memory://seed-cli", *more])
    assert result.exit_code == 0, result.output
    return result.output


def test_seed_touches_only_its_own_pipeline_and_only_missing_repairs_a_damaged_control(workdir):
    state_id = Deployment.load(workdir).state_id
    a, b = (shared_store("memory://seed-cli", namespace(p, state_id)) for p in ("pa", "pb"))
    _seed(workdir, "--topic-prefix", "pa")
    _seed(workdir, "--topic-prefix", "pb")
    b.mark_audit_copies({"x": "edge:1"})
    b.apply_control([Verdict("x", "edge:1", True)], ControlRule(target=0.0, step=0.1))
    assert "'pa'" in _seed(workdir, "--topic-prefix", "pa")
    assert b.control() == Control(offset=0.1, version=1)  # pipeline b's offset survived a's seed
    a._control = {"offset": "inf", "version": "2", "anchor": "0"}  # damaged
    said = _seed(workdir, "--topic-prefix", "pa", "--only-missing")
    assert "reset the threshold control" in said and a.control() == Control()
    assert "reset the threshold control" not in _seed(workdir, "--topic-prefix", "pb", "--only-missing")
    assert b.control() == Control(offset=0.1, version=1)
