"""Options shared by several commands, and the helpers that turn them into settings. Nothing here imports
torch: arguments are checked before any slow import."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from dimee.common.choices import Guarantee, LogLevel
from dimee.common.errors import DimeeError
from dimee.data.registry import NAMES_HELP, DatasetSpec
from dimee.method.routing_policy import POLICIES
from dimee.producers.sources import SourceSpec
from dimee.streaming.config import Settings, check_state_url, kafka_servers, setting_default
from dimee.streaming.stage import BatchLimits

DEFAULT_WORKDIR = Path("artifacts/demo")

# -- data ----------------------------------------------------------------------------------------------
def _data(*names: str, **kwargs: object) -> typer.models.OptionInfo:
    return typer.Option(*names, rich_help_panel="Data", **kwargs)  # type: ignore[arg-type]


DatasetOpt = Annotated[str, _data("--dataset", "-d", help=f"Dataset: {NAMES_HELP}.")]
DataPathOpt = Annotated[Path | None, _data("--data-path", help="Folder for glue:TASK data (the GLUE TSV folder).")]
TextColOpt = Annotated[str, _data(help="Text column of a CSV/TSV/JSONL file (or HF dataset).")]
LabelColOpt = Annotated[str, _data(help="Label column (integers, or names mapped in sorted order).")]
PairColOpt = Annotated[str | None, _data(help="Second-sentence column, for sentence pairs.")]
SeedOpt = Annotated[int, _data(help="Seed of the split (and of training where it applies).")]
WorkdirOpt = Annotated[Path, typer.Option(help="Work folder: model/, calibration.json, policy.json, records/.")]


# -- streaming -----------------------------------------------------------------------------------------
def _connection(**kwargs: object) -> typer.models.OptionInfo:
    return typer.Option(rich_help_panel="Kafka and Redis", **kwargs)  # type: ignore[arg-type]


BrokerOpt = Annotated[str | None, _connection(
    help="kafka://HOST:PORT[,HOST:PORT] of the Kafka cluster; required (here or in DIMEE_BROKER): this command "
         "talks to the other roles only through it.")]
EmbeddedBrokerOpt = Annotated[str | None, _connection(
    help="memory:// (embedded, the default: every role in this process) or kafka://HOST:PORT[,HOST:PORT]. Env: "
         "DIMEE_BROKER.")]
StateOpt = Annotated[str | None, _connection(
    help="memory:// (default) or redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS). Env: DIMEE_STATE.")]
PrefixOpt = Annotated[str | None, _connection(help="Topic prefix (default dimee). Env: DIMEE_TOPIC_PREFIX.")]
ApiOpt = Annotated[str | None, _connection(
    help="Kafka protocol version to pin, e.g. 0.9 for a legacy broker; default auto-detect.")]
GuaranteeOpt = Annotated[Guarantee | None, _connection(
    help="exactly-once (outputs and input offsets in one Kafka transaction; needs Kafka 0.11+), at-least-once, "
         "or auto (exactly-once where the broker has transactions). Env: DIMEE_GUARANTEE.")]
InstanceOpt = Annotated[str | None, _connection(
    help="Stable name of this instance (e.g. the pod name): a restarted instance with the same name fences the "
         "old one's transactions. Default: host and process id. Env: DIMEE_INSTANCE_ID.")]
PartitionsOpt = Annotated[int | None, _connection(
    min=1, help="Partitions of the topics dimee creates (default 3). Env: DIMEE_PARTITIONS.")]
def _compute(**kwargs: object) -> typer.models.OptionInfo:
    return typer.Option(rich_help_panel="Compute", **kwargs)  # type: ignore[arg-type]


ThreadsOpt = Annotated[int | None, _compute(
    min=1, help="Torch (and tokenizer) threads of this role; default all cores. Split a machine's cores between "
                "the roles on it (docs/operations.md, sizing). Env: DIMEE_THREADS.")]
DeviceOpt = Annotated[str | None, _compute(
    help="Where the worker runs its partition: cpu (default), cuda, cuda:N or mps. Env: DIMEE_DEVICE.")]
def _control(*names: str, **kwargs: object) -> typer.models.OptionInfo:
    return typer.Option(*names, rich_help_panel="Audit and control", **kwargs)  # type: ignore[arg-type]


AuditRateOpt = Annotated[float | None, _control(
    min=0.0, max=1.0, help="Share of the samples the mobile and edge answer that the full model also runs on the "
                           "cloud, to measure their disagreement online (default 0.05; its cost counts). Env: "
                           "DIMEE_AUDIT_RATE.")]
ControlOpt = Annotated[bool | None, _control(
    "--control/--no-control", help="Run the live threshold controller with the router: the audit stream moves an "
                                   "offset on the exit thresholds below the cloud (docs/policies.md). Env: "
                                   "DIMEE_CONTROL.")]
ControlTargetOpt = Annotated[float | None, _control(
    min=0.0, max=1.0, help="Disagreement share among audited answers the controller aims at (default: the "
                           "calibration's, for a tuned policy). Env: DIMEE_CONTROL_TARGET.")]
ControlStepOpt = Annotated[float | None, _control(
    min=0.0, max=1.0, help="How far one audit moves the offset (default 0.02). Env: DIMEE_CONTROL_STEP.")]
def _batches(**kwargs: object) -> typer.models.OptionInfo:
    return typer.Option(rich_help_panel="Micro-batches", **kwargs)  # type: ignore[arg-type]


def _default(name: str) -> str:
    """A Settings default as a help text shows it (from Settings: the help never repeats it)."""
    return f"{setting_default(name):g}"


# These default to None: the value then comes from Settings (the environment, a .env file, else its default).
MaxWaitOpt = Annotated[float | None, _batches(
    min=0.0, help=f"How long a partial micro-batch waits for more records (ms; default {_default('max_wait_ms')}). "
                  "Env: DIMEE_MAX_WAIT_MS.")]
CommitIntervalOpt = Annotated[float | None, _batches(
    min=0.0, help="Least time between two commits (transactions) of a stage (ms; default "
                  f"{_default('commit_interval_ms')}): batches computed sooner are sent together, at most "
                  "--max-queued-batches of them. 0: as soon as the broker took the previous one. Env: "
                  "DIMEE_COMMIT_INTERVAL_MS.")]
MaxQueuedOpt = Annotated[int | None, _batches(
    min=1, help="Most micro-batches a stage keeps back (while a commit runs or the interval has not passed) before "
                f"it sends them as one (default {_default('max_queued_batches')}). Env: DIMEE_MAX_QUEUED_BATCHES.")]


def _max_batch_opt(role_default: int | None) -> object:
    shown = _default("max_batch") if role_default is None else role_default
    return Annotated[int | None, _batches(min=1, help=f"Largest micro-batch (default {shown}). Env: "
                                                      "DIMEE_MAX_BATCH.")]


IdleExitOpt = Annotated[float | None, typer.Option(help="Exit after this many idle seconds (default: run until "
                                                        "SIGTERM/SIGINT).")]
MetricsOpt = Annotated[int | None, typer.Option(
    min=1, max=65535, help="Serve /healthz, /readyz and Prometheus /metrics on this port (address: "
                           "DIMEE_METRICS_HOST, default 127.0.0.1).")]
LogOpt = Annotated[LogLevel, typer.Option(case_sensitive=False, help="Log level.")]
PolicyOpt = Annotated[str, typer.Option(
    help="auto (what `dimee study` chose on calibration, else DIMEE-F), or one of: " + ", ".join(POLICIES) + ".")]


def stream_settings(**options: object) -> Settings:
    """Settings from the environment (DIMEE_*), with the options given on the command line on top; option
    names are Settings fields. A bad value, from either, is one line naming both. So is a malformed broker or
    state URL the command takes: not a traceback, nor an outage retried for good once the role has started."""
    try:
        settings = Settings(**{name: value for name, value in options.items() if value is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "settings"
        raise DimeeError(f"--{field.replace('_', '-')} (or DIMEE_{field.upper()}): {error['msg']}, "
                         f"not {error.get('input')!r}") from exc
    checks = {"broker": lambda url: url.startswith("kafka://") and kafka_servers(url), "state": check_state_url}
    for field, check in checks.items():
        if field in options:
            try:
                check(getattr(settings, field))
            except DimeeError as exc:  # its message shows the URL without a password
                raise DimeeError(f"--{field} (or DIMEE_{field.upper()}) {exc}") from exc
    return settings


def existing_base_model(name: str | None) -> str | None:
    """A --base-model that is a path (not a hub id) must exist; checked before torch is imported."""
    if name and name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
        raise DimeeError(f"--base-model {name}: no such folder (give a local model folder or a hub id)")
    return name


def needs_a_broker(settings: Settings) -> None:
    """A role run as its own process talks to the others only through a real broker: the embedded one
    (memory://, the default) connects nothing across processes, so refuse it instead of idling silently."""
    if settings.broker.startswith("memory://"):
        raise DimeeError("no broker: pass --broker kafka://HOST:PORT or set DIMEE_BROKER (the embedded memory:// "
                         "broker connects nothing across processes; `dimee pipeline` runs every role in one)")


# -- options declared once, bundled into one argument ---------------------------------------------------
Command = TypeVar("Command", bound=Callable[..., None])


def _option(name: str, annotation: object, default: object = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def bundled(into: str, build: Callable[..., object], options: list[inspect.Parameter]) -> Callable[[Command], Command]:
    """Adds `options` to a command's command line and hands the command one value, `build(**options)`, as its
    parameter `into`: shared options are declared here once instead of in every command's signature."""

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != into]

        @functools.wraps(command)
        def with_options(**values: object) -> object:
            shared = {p.name: values.pop(p.name) for p in options}
            return command(**values, **{into: build(**shared)})

        with_options.__signature__ = signature.replace(parameters=[*own, *options])  # type: ignore[attr-defined]
        with_options.__annotations__ = {p.name: p.annotation for p in [*own, *options]}
        return with_options  # type: ignore[return-value]

    return decorate


dataset_options = bundled("data", DatasetSpec, [
    _option("name", DatasetOpt, "rt-sentences"), _option("path", DataPathOpt), _option("text_col", TextColOpt, "text"),
    _option("label_col", LabelColOpt, "label"), _option("pair_col", PairColOpt), _option("seed", SeedOpt, 0)])
"""The dataset options (`--dataset`, `--data-path`, the columns, `--seed`) as one `data: DatasetSpec`."""

# Every command-line option backed by a Settings field, by field name: a command takes the ones it names.
SETTING_OPTIONS = {
    "broker": BrokerOpt, "state": StateOpt, "topic_prefix": PrefixOpt, "kafka_api_version": ApiOpt,
    "guarantee": GuaranteeOpt, "instance_id": InstanceOpt, "partitions": PartitionsOpt,
    "threads": ThreadsOpt, "device": DeviceOpt, "audit_rate": AuditRateOpt,
    "control": ControlOpt, "control_target": ControlTargetOpt, "control_step": ControlStepOpt}
CONTROL = ("control", "control_target", "control_step")


def settings_options(*names: str, embedded: bool = False) -> Callable[[Command], Command]:
    """The named connection options (Settings fields; see `SETTING_OPTIONS`) as one `settings: Settings`, from the
    environment with the command line on top. A command with `broker` needs a real one (`needs_a_broker`, as its
    --help says) unless `embedded`: it runs every role in its own process, where memory:// (the default) works."""
    if "broker" not in names or embedded:
        return bundled("settings", stream_settings, [
            _option(name, EmbeddedBrokerOpt if name == "broker" else SETTING_OPTIONS[name]) for name in names])

    def kafka_settings(**options: object) -> Settings:
        settings = stream_settings(**options)
        needs_a_broker(settings)
        return settings

    return bundled("settings", kafka_settings, [_option(name, SETTING_OPTIONS[name]) for name in names])


source_options = bundled("source", SourceSpec, [
    _option("source", Annotated[str, typer.Option(
        help="split:NAME (train/calibration/test of --dataset), a .csv/.tsv/.jsonl file, or - for stdin (JSON or "
             "text lines).")], "split:test"),
    _option("dataset", Annotated[str, typer.Option(help="Dataset for split: sources.")], "rt-sentences"),
    _option("text_col", Annotated[str, typer.Option(help="Text column of a file source.")], "text"),
    _option("label_col", Annotated[str, typer.Option(help="Label column of a file source (optional).")], "label"),
    _option("id_col", Annotated[str | None, typer.Option(help="Id column of a file source (default FILE-ROW).")]),
    _option("drift", Annotated[str | None, typer.Option(help="Comma-separated domains to send one after another, "
                                                              "e.g. amazon,imdb,yelp with uci-sentences.")]),
    _option("seed", Annotated[int, typer.Option(help="Split seed.")], 0)])
"""Where samples come from (`dimee produce`, `dimee pipeline`) as one `source: SourceSpec`."""

policy_options = bundled("policy", lambda policy: policy, [_option("policy", PolicyOpt, "auto")])
"""`--policy` as `policy: str` (a name of POLICIES, or auto)."""



def batch_limits(settings: Settings) -> BatchLimits:
    """The batch limits the settings give (ms on the command line and in the environment, s in the stage)."""
    return BatchLimits(max_batch=settings.max_batch, max_wait_s=settings.max_wait_ms / 1000.0,
                       poll_timeout_s=settings.poll_timeout_s, max_poll_interval_s=settings.max_poll_interval_s,
                       max_queued_batches=settings.max_queued_batches,
                       commit_interval_s=settings.commit_interval_ms / 1000.0)


def batch_options(max_batch: int | None = None) -> Callable[[Command], Command]:
    """`--max-batch`, `--max-wait-ms`, `--commit-interval-ms` and `--max-queued-batches` as one `limits:
    BatchLimits`: each from the command line, else the environment (DIMEE_MAX_BATCH, …), else Settings' default.
    `max_batch`: this command's own default batch, where it is not Settings' (taken unless either gives one)."""

    def build(**given: object) -> BatchLimits:
        settings = stream_settings(**given)  # a bad value, on the command line or in the environment: one line
        limits = batch_limits(settings)
        if max_batch is not None and "max_batch" not in settings.model_fields_set:
            limits = dataclasses.replace(limits, max_batch=max_batch)
        return limits

    return bundled("limits", build, [
        _option("max_batch", _max_batch_opt(max_batch)), _option("max_wait_ms", MaxWaitOpt),
        _option("commit_interval_ms", CommitIntervalOpt), _option("max_queued_batches", MaxQueuedOpt)])


KAFKA = ("broker", "topic_prefix", "kafka_api_version")
"""What any Kafka client needs; stages add guarantee, instance id and partitions, and those with a model
their threads."""
STAGE = (*KAFKA, "guarantee", "instance_id", "partitions")


def use_all_cores() -> None:
    import os

    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))


def use_threads(threads: int | None) -> None:
    """A role's share of the machine (default: torch's, every physical core). Set through the environment
    for the libraries not loaded yet (torch reads OMP_NUM_THREADS when it starts; the Rust tokenizer sizes its
    pool from RAYON_NUM_THREADS when first used), and through threadpoolctl for the BLAS numpy has loaded.
    Never imports torch itself: the router and the sink run without it."""
    if threads is None:
        return
    import os
    import sys

    from threadpoolctl import threadpool_limits

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[name] = str(threads)
    if threads == 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    threadpool_limits(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def device_available(device: str) -> None:
    """A worker asked to run on an accelerator this machine lacks says so in one line."""
    if device == "cpu":
        return
    import torch

    usable = torch.backends.mps.is_available() if device == "mps" else torch.cuda.is_available() and (
        ":" not in device or int(device.split(":")[1]) < torch.cuda.device_count())
    if not usable:
        raise DimeeError(f"--device {device}: no such device here (torch sees "
                         f"{torch.cuda.device_count()} CUDA device(s)); use --device cpu")


def router_options(max_batch: int, *more: str, embedded: bool = False) -> Callable[[Command], Command]:
    """What a command hosting the router takes: `settings` (with the state store and the `more` settings),
    `limits` and `policy`; `embedded` as `settings_options` takes it."""

    def decorate(command: Command) -> Command:
        return batch_options(max_batch)(settings_options(*STAGE, "state", "threads", *CONTROL, *more,
                                                         embedded=embedded)(policy_options(command)))

    return decorate
