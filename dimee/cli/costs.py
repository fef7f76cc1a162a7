"""`dimee costs`: a cost model measured on this machine (per-layer latency of every tier partition, bytes of
every hop) and priced with the user's prices; docs/costs.md."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated

import typer

from dimee.cli import options as opt
from dimee.cli.app import app
from dimee.common.choices import Split
from dimee.common.errors import DimeeError
from dimee.common.workdir import Workdir
from dimee.data.registry import DatasetSpec
from dimee.method.tiers import CostModel
from dimee.offline.costs import MeasureConfig, Measured, Pricing, Texts
from dimee.streaming.config import Settings


def _price(help_text: str) -> typer.models.OptionInfo:
    return typer.Option(min=0.0, help=help_text, rich_help_panel="Prices")


def _priced(name: str, help_text: str) -> inspect.Parameter:
    """A price option, defaulting to Pricing's default of the same name."""
    default = Pricing.__dataclass_fields__[name].default
    kind = float | None if default is None else float
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[kind, _price(help_text)])


NormaliseOpt = Annotated[bool, typer.Option(
    help="Divide every constant but β by the cost of a cloud-only sample, so that it costs 1.0 (docs/method.md).",
    rich_help_panel="Prices")]
# Declared once as `pricing: Pricing`; the names are Pricing's fields. Units: any one, e.g. mobile-ms equivalents.
pricing_options = opt.bundled("pricing", Pricing, [
    _priced("price_per_ms_mobile", "Price of one ms of mobile compute."),
    _priced("price_per_ms_edge", "Price of one ms of edge compute."),
    _priced("price_per_ms_cloud", "Price of one ms of cloud compute (default 0: inside --cloud-charge)."),
    _priced("price_per_kb_edge", "Price per KB between mobile and edge (routed message up, prediction back)."),
    _priced("price_per_kb_cloud", "Price per KB between mobile and cloud (routed message up, prediction back)."),
    _priced("price_per_kb_hidden", "Price per KB of hidden state a `continue` escalation carries (default: "
                                   "--price-per-kb-edge)."),
    _priced("edge_charge", "Fixed price of a message to the edge (e.g. its round trip)."),
    _priced("cloud_charge", "Fixed price of a cloud request (its round trip and platform fee): κ before scaling."),
    _priced("beta", "Reward weight of cost against confidence (kept as given, never scaled)."),
    inspect.Parameter("normalise", inspect.Parameter.KEYWORD_ONLY, default=True, annotation=NormaliseOpt),
])


def _texts(data: DatasetSpec, split: str, texts: Path | None, samples: int) -> Texts:
    from dimee.offline.costs import texts_from_file, texts_from_split

    if texts is not None:
        return texts_from_file(texts, data.text_col, data.pair_col, samples)
    return texts_from_split(data, split, Settings().data_dir, samples)


def _bytes(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(cost: CostModel, measured: Measured) -> str:
    """Per tier: ms per sample per layer, layers, bytes of each hop; then the machine and the cost model."""
    lines = [f"{'tier':<7} {'layers':>6} {'ms/layer':>9} {'routed B':>9} {'prediction B':>13} "
             f"{'escalation B':>13} {'of which hidden B':>18}"]
    for f in measured.tiers:
        lines.append(f"{f.tier.value:<7} {f.layers:>6} {f.ms_per_layer:>9.3f} {_bytes(f.routed_bytes):>9} "
                     f"{_bytes(f.prediction_bytes):>13} {_bytes(f.escalation_bytes):>13} {_bytes(f.hidden_bytes):>18}")
    machine = measured.machine
    lines.append(f"measured on {machine.cpu} ({machine.cpu_count} CPUs, {machine.torch_threads} torch thread(s)), "
                 f"{measured.samples} texts of {measured.texts}, {measured.mean_tokens:.1f} tokens each on average")
    scale = (f"normalised: cloud-only = 1 = {measured.raw_cloud_only:.4g} in the prices' units"
             if (measured.pricing or {}).get("normalise") else "not normalised")
    constants = "  ".join(f"{name} {value:.4g}" for name, value in cost.model_dump().items())
    lines.append(f"cost model ({scale}): {constants}")
    return "\n".join(lines)


@app.command("costs")
@opt.dataset_options
@pricing_options
def costs_cmd(
    data: DatasetSpec,
    pricing: Pricing,
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    split: Annotated[Split, typer.Option(help="Split whose texts are measured on.", rich_help_panel="Data")
                     ] = "calibration",
    texts: Annotated[Path | None, typer.Option(
        help="Measure on this file's texts instead: .csv/.tsv/.jsonl (column --text-col), else one per line.",
        rich_help_panel="Data")] = None,
    samples: Annotated[int, typer.Option(min=1, help="How many texts (the first ones).")] = 64,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per batch, as a worker batches them.")] = 32,
    repeats: Annotated[int, typer.Option(min=1, help="Timed rounds after one warm-up; the median is kept.")] = 5,
    threads: Annotated[int, typer.Option(min=1, help="torch threads while timing.")] = 1,
    m: Annotated[int | None, typer.Option(min=1, help="Mobile cap (default: calibration.json's, else L/3).")] = None,
    n: Annotated[int | None, typer.Option(min=2, help="Edge cap (default: calibration.json's, else 2L/3).")] = None,
    out: Annotated[Path | None, typer.Option(help="Cost model file (default WORKDIR/cost_model.json).")] = None,
) -> None:
    """Measure on this machine what serving costs (ms per layer of every tier partition, bytes of every hop),
    price it and write a cost model file that CostModel.load reads. Reads WORKDIR, writes only --out."""
    from dimee.offline.costs import measure, plan_for, priced, write_cost_model

    work = Workdir(workdir)
    plan = plan_for(work, m, n)
    progress = (lambda line: typer.echo(line, err=True)) if sys.stderr.isatty() else None
    config = MeasureConfig(batch_size=batch_size, repeats=repeats, threads=threads, progress=progress)
    cost, measured = priced(measure(work, plan, _texts(data, split, texts, samples), config), pricing)
    target = out or work.cost_model
    try:
        write_cost_model(target, cost, measured)
    except OSError as exc:
        raise DimeeError(f"cannot write the cost model to {target}: {exc.strerror or exc}") from exc
    typer.echo(table(cost, measured))
    typer.echo(f"cost model written to {target}")
