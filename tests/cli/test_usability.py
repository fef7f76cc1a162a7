"""The small things a user trips over at the command line (issue 30, item 8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dimee.cli import app


def _labelled_csv(path: Path, rows: int = 40) -> Path:
    path.write_text("text,label\n" + "".join(f"sample number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(rows)))
    return path


def test_data_show_takes_the_dataset_as_data_fetch_does(tmp_path):
    """Defect: `data fetch NAME` took the name positionally but `data show NAME` refused it (only -d NAME)."""
    data = str(_labelled_csv(tmp_path / "reviews.csv"))
    positional = CliRunner().invoke(app, ["data", "show", data])
    assert positional.exit_code == 0, positional.output
    assert "train" in positional.output and "neg:" in positional.output
    assert CliRunner().invoke(app, ["data", "show", "-d", data]).output == positional.output  # -d still works


TYPE_TAG = re.compile(r"<[a-z][a-z ]*(\|[\w-]+)*>")  # typer's <bool>, <str>, <path>, <int range>, <a|b>


@pytest.mark.parametrize("command", [[], ["data"], ["data", "show"], ["data", "fetch"], ["produce"], ["train"],
                                     ["up"], ["route"]])
def test_help_shows_no_type_tags(command):
    """Defect: every flag's --help showed a `<bool>`/`<str>`-style tag (even --help itself)."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output and not TYPE_TAG.findall(result.output), TYPE_TAG.findall(result.output)
    if command in (["produce"], ["up"]):
        assert "[debug|info|warning|error]" in result.output  # choices are still listed


def _help_line(command: list[str], option: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return next(line for line in result.output.splitlines() if f"{option} " in line)


@pytest.mark.parametrize("command", ["up", "produce", "tail", "route", "work", "sink", "dashboard"])
def test_broker_help_says_what_the_command_takes(command):
    """Defect: --broker's help called memory:// the default where these commands refuse it."""
    line = _help_line([command], "--broker")
    assert "kafka://HOST:PORT" in line and "required" in line and "memory://" not in line, line


def test_the_embedded_pipeline_says_memory_is_its_default():
    line = _help_line(["pipeline"], "--broker")
    assert "memory:// (embedded, the default" in line and "kafka://HOST:PORT" in line, line


def test_shell_completion_is_offered():
    """Defect: no shell completion (typer's was turned off). --show-completion prints the bash script that asks
    dimee itself for the words, and dimee answers with its commands."""
    script = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="dimee")
    assert script.exit_code == 0 and script.exception is None, script.output
    assert "_DIMEE_COMPLETE=complete_bash" in script.output and "complete " in script.output
    words = CliRunner().invoke(app, [], prog_name="dimee", env={
        "_DIMEE_COMPLETE": "complete_bash", "COMP_WORDS": "dimee da", "COMP_CWORD": "1"})
    assert set(words.output.split()) == {"data", "dashboard"}
