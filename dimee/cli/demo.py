"""`dimee demo`: the main job, end to end, ending in a report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from dimee.cli.app import app
from dimee.cli.options import DEFAULT_WORKDIR, WorkdirOpt, use_all_cores
from dimee.config import Settings
from dimee.data.registry import DatasetSpec
from dimee.workdir import Workdir


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
    from dimee.calibration import CalibrationConfig
    from dimee.evaluation.report import methods_table
    from dimee.offline import run_calibrate, run_evaluate, run_train, splits_for
    from dimee.training import TrainConfig

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
    from dimee.evaluation.routing_study import StudyOptions, run_study
    from dimee.evaluation.study_report import write_study

    study = run_study(splits, work, test_exits, StudyOptions(max_drop=0.5, frontier=False))
    write_study(study, out, "dimee demo: routing policies on rt-sentences")
    default_row = next(r for r in study["methods"] if r["name"] == study["default_policy"])
    typer.echo(f"routing policies: {out / 'routing.md'}; default chosen on calibration: {study['default_policy']} "
               f"(test: {100 * default_row['accuracy']:.2f}% at cost {default_row['cost']:.3f})")
    return default_row


def _streaming_run(splits, test_exits, work: Workdir, out: Path, default_row: dict) -> None:
    from dimee.deployment import Deployment
    from dimee.runtime import configure_logging
    from dimee.streaming_report import append_to_report, markdown, stream_and_compare

    configure_logging("WARNING")
    result = stream_and_compare(splits.test, test_exits, Deployment.load(work, "DIMEE-F"),
                                Settings(broker="memory://", state="memory://", topic_prefix="demo"),
                                default=default_row["name"])
    append_to_report(result, out)
    typer.echo(markdown(result))
