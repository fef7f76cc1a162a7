"""`dimee demo`: the main job, end to end, ending in a report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from dimee.cli.app import app
from dimee.cli.options import DEFAULT_WORKDIR, WorkdirOpt, use_all_cores
from dimee.common.workdir import Workdir
from dimee.data.registry import DatasetSpec
from dimee.streaming.config import Settings


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Folder for the report.")] = Path("runs/demo"),
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 3,
    retrain: Annotated[bool, typer.Option(help="Train again even if WORKDIR has a model.")] = False,
    stream: Annotated[bool, typer.Option(help="Also stream the test split through the embedded pipeline.")] = True,
) -> None:
    """The main job: rt-sentences → fine-tune MiniLM → calibrate → evaluate every method → stream the test
    split through producer → router → workers → sink → report in OUT."""
    from dimee.method.calibration import CalibrationConfig
    from dimee.offline.evaluation.report import methods_table
    from dimee.offline.training import TrainConfig
    from dimee.offline.workflow import run_calibrate, run_evaluate, run_train, splits_for

    use_all_cores()
    started, work = time.perf_counter(), Workdir(workdir)
    splits = splits_for(DatasetSpec(name="rt-sentences"), Settings().data_dir)
    typer.echo(f"rt-sentences: {len(splits.train)} train / {len(splits.calibration)} calibration / "
               f"{len(splits.test)} test")
    if retrain or not work.has_model():
        run_train(splits, work, TrainConfig(epochs=epochs))
    else:
        typer.echo(f"reusing the model in {work.model} (--retrain to train again)")
    cal = run_calibrate(splits, work, CalibrationConfig(model_id="rt-sentences"))
    report, test_exits = run_evaluate(splits, work, out, title="dimee demo: rt-sentences, all-MiniLM-L6-v2")
    typer.echo(methods_table(report["methods"]))
    typer.echo(f"α* = {cal.alpha:.4f}; pools {cal.pool_sizes}")
    default_row = _routing_study(splits, work, out, test_exits)
    if stream:
        _streaming_run(splits, test_exits, work, out, default_row)
    typer.echo(f"wall-clock {time.perf_counter() - started:.0f} s; report: {out / 'report.md'}")


def _routing_study(splits, work: Workdir, out: Path, test_exits) -> dict:
    from dimee.offline.evaluation.routing_study import StudyOptions, run_study
    from dimee.offline.evaluation.study_report import guarantee_lines, write_study

    study = run_study(splits, work, test_exits, StudyOptions(frontier=False))
    write_study(study, out, "dimee demo: routing policies on rt-sentences")
    default_row = next(r for r in study["methods"] if r["name"] == study["default_policy"])
    shown = guarantee_lines(study)
    with (out / "report.md").open("a") as report:  # the main report says what the default promises
        report.write("\n".join(["", f"## The default policy: {study['default_policy']}", "",
                                 f"Chosen as the {study['default_rule']}.", "", *shown]) + "\n")
    typer.echo(f"routing policies: {out / 'routing.md'}; default chosen on calibration: {study['default_policy']} "
               f"(test: {100 * default_row['accuracy']:.2f}% at cost {default_row['cost']:.3f})")
    typer.echo("\n".join(shown))
    return default_row


def _streaming_run(splits, test_exits, work: Workdir, out: Path, default_row: dict) -> None:
    from dimee.composition.streaming_report import append_to_report, markdown, stream_and_compare
    from dimee.streaming.deployment import Deployment
    from dimee.streaming.runtime import configure_logging

    configure_logging("WARNING")
    result = stream_and_compare(splits.test, test_exits, Deployment.load(work, "DIMEE-F"),
                                Settings(broker="memory://", state="memory://", topic_prefix="demo"),
                                default=default_row["name"])
    append_to_report(result, out)
    typer.echo(markdown(result))
