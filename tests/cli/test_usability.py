"""The small things a user trips over at the command line (issue 30, item 8)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dimee.cli import app
from tests.support.helpers import RecordingSupervisor


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


def test_a_mistyped_dimee_variable_is_named_once_with_the_closest_known_name(monkeypatch):
    """Defect: DIMEE_BROKR=... was ignored in silence (the embedded broker was used instead)."""
    for name in [n for n in os.environ if n.upper().startswith("DIMEE_")]:
        monkeypatch.delenv(name)  # only the variables this test sets
    env = {"DIMEE_BROKR": "kafka://h:9092", "DIMEE_NOT_A_THING": "1",
           # known: a setting, an option's own variable, the test services' addresses
           "DIMEE_BROKER": "kafka://h:9092", "DIMEE_LOG_FORMAT": "json", "DIMEE_TEST_KAFKA": "h:9092"}
    result = CliRunner().invoke(app, ["schema"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: DIMEE_BROKR is not a dimee setting and is ignored (did you mean DIMEE_BROKER?)",
        "warning: DIMEE_NOT_A_THING is not a dimee setting and is ignored"]


def test_the_variables_the_repositorys_scripts_read_are_no_typo():
    """Defect: DIMEE_KAFKA_PORT, which deploy/local-services.sh reads, was warned of as a mistyped setting."""
    import typer.main

    from dimee.cli.environment import TOOLING_PREFIX, known_variables, unknown_variables

    root = Path(__file__).resolve().parents[2]
    scripts = [*root.joinpath("deploy").rglob("*"), root / "Makefile", root / "tests/deploy/test_helm_chart.py"]
    read = {name for path in scripts if path.is_file()
            for name in re.findall(r"DIMEE_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="replace"))}
    read = {name for name in read if not name.startswith(TOOLING_PREFIX)}
    assert {"DIMEE_KAFKA_PORT", "DIMEE_MAVEN_REPO", "DIMEE_HELM"} <= read  # the scan finds them
    assert unknown_variables(dict.fromkeys(read, "1"), known_variables(typer.main.get_command(app))) == []


def test_up_warns_once_not_once_per_role(tmp_path, monkeypatch):
    from dimee.streaming.runtime import StopFlag

    monkeypatch.setattr("dimee.streaming.supervisor.Supervisor", RecordingSupervisor)
    monkeypatch.setattr(StopFlag, "install_signal_handlers", lambda self: None)
    monkeypatch.setenv("DIMEE_STAET", "redis://h:6379/0")
    result = CliRunner().invoke(app, ["up", "--broker", "kafka://127.0.0.1:1", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "DIMEE_STAET is not a dimee setting" in result.stderr
    env = RecordingSupervisor.env
    assert "DIMEE_STAET" not in env and env["DIMEE_BROKER"] == "kafka://127.0.0.1:1"


def test_training_says_how_far_it_is_where_its_output_is_a_log(tmp_path, monkeypatch, capsys):
    """Defect: `dimee train` printed nothing for minutes when stderr was not a terminal (tqdm's bar is off
    there). It writes a progress line to stderr (here after every batch: the interval is set to 0)."""
    from dimee.data.dataset import TextDataset
    from dimee.offline import training
    from tests.support.helpers import sentences, tiny_model, tiny_tokenizer

    monkeypatch.setattr(training, "PROGRESS_EVERY_S", 0.0)
    texts = sentences(20)
    data = TextDataset("tiny", texts, [len(t) % 2 for t in texts], ["0", "1"])
    training.train(tiny_model(num_layers=2), tiny_tokenizer(tmp_path / "tok"), data, data,
                   training.TrainConfig(epochs=1, batch_size=8))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(", loss")[0] for line in lines if line.startswith("epoch 1/1:")] == [
        "epoch 1/1: 1/3 batches", "epoch 1/1: 2/3 batches", "epoch 1/1: 3/3 batches"]
    assert "calibration accuracy: 1/1 batches" in lines  # the calibration pass after the epoch too
