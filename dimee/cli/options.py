"""Options shared by several commands, and the helpers that turn them into settings. Nothing here imports
torch: arguments are checked before any slow import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dimee.choices import Guarantee
from dimee.config import Settings
from dimee.data.registry import NAMES_HELP, DatasetSpec
from dimee.routing_policy import POLICIES

DEFAULT_WORKDIR = Path("artifacts/demo")

# -- data ----------------------------------------------------------------------------------------------
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help=f"Dataset: {NAMES_HELP}.")]
DataPathOpt = Annotated[Path | None, typer.Option(help="Folder for glue:TASK data (the GLUE TSV folder).")]
TextColOpt = Annotated[str, typer.Option(help="Text column of a CSV/TSV/JSONL file (or HF dataset).")]
LabelColOpt = Annotated[str, typer.Option(help="Label column (integers, or names mapped in sorted order).")]
PairColOpt = Annotated[str | None, typer.Option(help="Second-sentence column, for sentence pairs.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the split (and of training where it applies).")]
WorkdirOpt = Annotated[Path, typer.Option(help="Work folder: model/, calibration.json, policy.json, records/.")]

# -- streaming -----------------------------------------------------------------------------------------
BrokerOpt = Annotated[str | None, typer.Option(
    help="memory:// (embedded, default) or kafka://HOST:PORT[,HOST:PORT]. Env: DIMEE_BROKER.")]
StateOpt = Annotated[str | None, typer.Option(
    help="memory:// (default) or redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS). Env: DIMEE_STATE.")]
PrefixOpt = Annotated[str | None, typer.Option(help="Topic prefix (default dimee). Env: DIMEE_TOPIC_PREFIX.")]
ApiOpt = Annotated[str | None, typer.Option(
    help="Kafka protocol version to pin, e.g. 0.9 for a legacy broker; default auto-detect.")]
GuaranteeOpt = Annotated[Guarantee | None, typer.Option(
    help="exactly-once (outputs and input offsets in one Kafka transaction; needs Kafka 0.11+), at-least-once, "
         "or auto (exactly-once where the broker has transactions). Env: DIMEE_GUARANTEE.")]
InstanceOpt = Annotated[str | None, typer.Option(
    help="Stable name of this instance (e.g. the pod name): a restarted instance with the same name fences the "
         "old one's transactions. Default: host and process id. Env: DIMEE_INSTANCE_ID.")]
PartitionsOpt = Annotated[int | None, typer.Option(min=1, help="Partitions of the topics dimee creates (default 3). "
                                                             "Env: DIMEE_PARTITIONS.")]
MaxBatchOpt = Annotated[int, typer.Option(min=1, help="Largest micro-batch.")]
MaxWaitOpt = Annotated[float, typer.Option(min=0.0, help="How long a partial micro-batch waits (ms).")]
IdleExitOpt = Annotated[float | None, typer.Option(help="Exit after this many idle seconds (default: run until "
                                                        "SIGTERM/SIGINT).")]
MetricsOpt = Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port (127.0.0.1).")]
LogOpt = Annotated[str, typer.Option(help="Log level.")]
AdaptiveOpt = Annotated[bool, typer.Option(help="The paper's DIMEE-D (same as --policy DIMEE-D).")]
PolicyOpt = Annotated[str, typer.Option(
    help="auto (what `dimee study` chose on calibration, else DIMEE-F), or one of: " + ", ".join(POLICIES) + ".")]


def spec(dataset: str, data_path: Path | None, text_col: str, label_col: str, pair_col: str | None,
         seed: int) -> DatasetSpec:
    return DatasetSpec(name=dataset, path=data_path, text_col=text_col, label_col=label_col, pair_col=pair_col,
                       seed=seed)


def stream_settings(**options: object) -> Settings:
    """Settings from the environment (DIMEE_*), with the options given on the command line on top; option
    names are Settings fields."""
    return Settings(**{name: value for name, value in options.items() if value is not None})


def use_all_cores() -> None:
    import os

    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
