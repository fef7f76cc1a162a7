"""Longer studies on a calibrated model: the routing study, several training seeds, distribution shift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dimee.cli import options as opt
from dimee.cli.app import app
from dimee.common.choices import Objective
from dimee.common.errors import DimeeError
from dimee.common.workdir import Workdir
from dimee.data.registry import DatasetSpec
from dimee.streaming.config import Settings


@app.command("study")
@opt.dataset_options
def study_cmd(
    data: DatasetSpec,
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    out: Annotated[Path, typer.Option(help="Folder for routing.md, routing.json and frontiers.png.")] = Path(
        "runs/study"),
    objective: Annotated[Objective, typer.Option(
        help="How the deployed default is chosen: accuracy-budget (the cheapest policy whose loss against the full "
             "model is shown within the budget set by `dimee calibrate --max-drop`, at 95% confidence) or reward "
             "(the paper's DIMEE-F at its reward α*).")
    ] = "accuracy-budget",
) -> None:
    """Every routing policy (escalation, cascade, learned, feedback) on a calibrated WORKDIR; picks the default
    policy on the calibration split under the accuracy budget."""
    from dimee.offline.evaluation.report import methods_table
    from dimee.offline.evaluation.routing_study import StudyOptions
    from dimee.offline.experiments import study
    from dimee.offline.workflow import splits_for

    opt.use_all_cores()
    splits = splits_for(data, Settings().data_dir)
    result = study(splits, Workdir(workdir), out, StudyOptions(objective, data.seed))
    typer.echo(methods_table(result["methods"]))
    typer.echo(f"default policy (chosen on calibration): {result['default_policy']}; report: {out / 'routing.md'}")


@app.command("experiment")
def experiment_cmd(
    seeds: Annotated[str, typer.Option(help="Comma-separated training seeds.")] = "0,1,2",
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", "-d", help="Data set (repeat for several: one table like the paper's Table I across them; "
                                "default rt-sentences).")] = None,
    root: Annotated[Path, typer.Option(help="Folder for one workdir per data set and seed.")] = Path(
        "artifacts/seeds"),
    out: Annotated[Path, typer.Option(help="Folder for seeds.md / tasks.md, their JSON and per-seed reports.")
                   ] = Path("runs/seeds"),
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    max_drop: Annotated[float, typer.Option(
        min=0.0, help="Accuracy points the default may lose against the full model (shown at 95% confidence).")
                        ] = 0.5,
    max_train_samples: Annotated[int | None, typer.Option(min=1, help="Train on a random subset of this size.")
                                 ] = None,
) -> None:
    """Train, calibrate and run the routing study for several training seeds (and data sets); mean ± sd."""
    from dimee.offline.experiments import SeedsPlan, multi_seed, multi_task
    from dimee.offline.workflow import splits_for

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise DimeeError(f"--seeds must be comma-separated integers, not {seeds!r}") from exc
    names = dataset or ["rt-sentences"]
    opt.use_all_cores()
    plan = SeedsPlan(seed_list, epochs, max_drop, max_train_samples)
    if len(names) > 1:
        multi_task([DatasetSpec(name=n) for n in names], Settings().data_dir, root, out, plan)
        typer.echo((out / "tasks.md").read_text())
        return
    summary = multi_seed(splits_for(DatasetSpec(name=names[0]), Settings().data_dir), root, out, plan)
    typer.echo((out / "seeds.md").read_text())
    typer.echo(f"defaults per seed: {summary['default_policies']}")


@app.command("drift")
def drift_cmd(
    calibrate_on: Annotated[str, typer.Option(help="uci-sentences domain to train and calibrate on.")] = "amazon",
    stream: Annotated[str, typer.Option(
        help="Domains streamed after its test split, in order, comma-separated; with --calibrated also data files "
             "(.csv/.tsv/.jsonl with text and label columns) or other data set names, each streamed whole.")
    ] = "imdb,yelp",
    workdir: Annotated[Path | None, typer.Option(help="Default artifacts/drift-DOMAIN.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for drift.md, drift.json and drift.png.")] = Path("runs/drift"),
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    seed: opt.SeedOpt = 0,
    calibrated: Annotated[Path | None, typer.Option(
        help="Instead of training on --calibrate-on: stream this calibrated work folder's own test split "
             "(--dataset), then every --stream domain whole, through the pipeline with its default policy, "
             "without and with the controller; per window of 500 the drop against the full model, cost with "
             "audits and the window's floor (drift-windows.md).")] = None,
    dataset: Annotated[str, typer.Option(help="With --calibrated: the data set it was calibrated on.")
                       ] = "rt-sentences",
    audit_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="With --calibrated: the audit rate.")] = 0.05,
    policy: Annotated[str, typer.Option(help="With --calibrated: the policy streamed (auto: WORKDIR/policy.json).")
                      ] = "auto",
    control_target: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="With --calibrated: the controller's target (default: the calibration's, for a "
                               "tuned policy).")] = None,
) -> None:
    """Distribution shift: calibrate on one uci-sentences domain, stream the others; accuracy and cost per
    segment for the paper's routers and this project's. With --calibrated: a calibrated model streamed for real
    across domains, with and without the live threshold controller."""
    from dimee.data.fetch import UCI_DOMAINS
    from dimee.offline.experiments import drift

    domains = [d for d in stream.split(",") if d]
    if calibrated is not None:
        if not domains:
            raise DimeeError(f"--stream takes uci-sentences domains ({', '.join(UCI_DOMAINS)}) or data files")
        _drift_windows(calibrated, dataset, domains, out,
                       Settings(audit_rate=audit_rate, control_target=control_target), policy)
        return
    if calibrate_on not in UCI_DOMAINS or not domains or set(domains) - set(UCI_DOMAINS) or calibrate_on in domains:
        raise DimeeError(f"domains must be distinct values of {', '.join(UCI_DOMAINS)}")
    opt.use_all_cores()
    from dimee.offline.training import TrainConfig

    drift(Settings().data_dir, Workdir(workdir or Path(f"artifacts/drift-{calibrate_on}")), out,
          (calibrate_on, domains), TrainConfig(epochs=epochs, seed=seed))
    typer.echo((out / "drift.md").read_text())


def _drift_windows(workdir: Path, dataset: str, domains: list[str], out: Path, settings: Settings,
                   policy: str) -> None:
    from dimee.composition.drift_windows import Segment, drift_windows
    from dimee.offline.experiments import stream_segments
    from dimee.offline.workflow import splits_for
    from dimee.streaming.deployment import Deployment
    from dimee.streaming.runtime import configure_logging

    opt.use_all_cores()
    configure_logging("WARNING")
    test = splits_for(DatasetSpec(name=dataset), settings.data_dir).test
    segments = [Segment(f"{dataset} test", test),
                *(Segment(name, data) for name, data in stream_segments(settings.data_dir, domains))]
    drift_windows(Deployment.load(workdir, policy), segments, settings, out)
    typer.echo((out / "drift-windows.md").read_text())
