"""Stream roles of the `dimee` CLI: produce, route, work, tail, sink, and pipeline (all in one process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from dimee.config import Settings
from dimee.errors import DimeeError
from dimee.tiers import Tier

BrokerOpt = Annotated[str | None, typer.Option(
    help="memory:// (embedded, default) or kafka://HOST:PORT[,HOST:PORT]. Env: DIMEE_BROKER.")]
StateOpt = Annotated[str | None, typer.Option(
    help="memory:// (default) or redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS). Env: DIMEE_STATE.")]
PrefixOpt = Annotated[str | None, typer.Option(help="Topic prefix (default dimee). Env: DIMEE_TOPIC_PREFIX.")]
ApiOpt = Annotated[str | None, typer.Option(
    help="Kafka protocol version to pin, e.g. 0.9 for the local broker; default auto-detect.")]
WorkdirOpt = Annotated[Path, typer.Option(help="Folder holding model/ and calibration.json.")]
MaxBatchOpt = Annotated[int, typer.Option(min=1, help="Largest micro-batch.")]
MaxWaitOpt = Annotated[float, typer.Option(min=0.0, help="How long a partial micro-batch waits (ms).")]
IdleExitOpt = Annotated[float | None, typer.Option(help="Exit after this many idle seconds (default: run until "
                                                        "SIGTERM/SIGINT).")]
MetricsOpt = Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port (127.0.0.1).")]
LogOpt = Annotated[str, typer.Option(help="Log level.")]
AdaptiveOpt = Annotated[bool, typer.Option(help="The paper's DIMEE-D (same as --policy DIMEE-D).")]
PolicyOpt = Annotated[str, typer.Option(
    help="auto (what `dimee study` chose on calibration, else DIMEE-F), or a name: DIMEE-F, DIMEE-D, DIMEE-F+esc, "
         "DIMEE-D+esc, Feedback-adaptive(+esc), Learned(+esc), Cascade, Edge+escalation, Mobile-only, Edge-only, "
         "Cloud-only.")]


def _settings(broker: str | None, state: str | None, prefix: str | None, api: str | None) -> Settings:
    overrides = {k: v for k, v in {"broker": broker, "state": state, "topic_prefix": prefix,
                                   "kafka_api_version": api}.items() if v is not None}
    return Settings(**overrides)


def _start(log_level: str, metrics_port: int | None):
    from dimee.runtime import StopFlag, configure_logging

    configure_logging(log_level)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    stop = StopFlag()
    stop.install_signal_handlers()
    return stop


def _limits(max_batch: int, max_wait_ms: float):
    from dimee.stage import BatchLimits

    return BatchLimits(max_batch=max_batch, max_wait_s=max_wait_ms / 1000.0)


def _calibration(workdir: Path):
    from dimee.calibration import Calibration
    from dimee.offline import calibration_path

    return Calibration.load(calibration_path(workdir))


def register(app: typer.Typer) -> None:
    @app.command("produce")
    def produce_cmd(
        source: Annotated[str, typer.Option(
            help="split:NAME (train/calibration/test of --dataset), a .csv/.tsv/.jsonl file, or - for stdin "
                 "(JSON or text lines)."
        )] = "split:test",
        dataset: Annotated[str, typer.Option(help="Dataset for split: sources.")] = "rt-sentences",
        text_col: Annotated[str, typer.Option(help="Text column of a file source.")] = "text",
        label_col: Annotated[str, typer.Option(help="Label column of a file source (optional).")] = "label",
        id_col: Annotated[str | None, typer.Option(help="Id column of a file source (default FILE-ROW).")] = None,
        count: Annotated[int | None, typer.Option(min=1, help="Send at most this many.")] = None,
        rate: Annotated[float | None, typer.Option(min=0.001, help="Messages per second (default: as fast "
                                                                   "as possible).")] = None,
        drift: Annotated[str | None, typer.Option(help="Comma-separated domains to send one after another, "
                                                       "e.g. amazon,imdb,yelp with uci-sentences.")] = None,
        seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
        broker: BrokerOpt = None, topic_prefix: PrefixOpt = None, kafka_api_version: ApiOpt = None,
        log_level: LogOpt = "INFO",
    ) -> None:
        """Publish samples to the samples topic, keyed by sample id."""
        from dimee.data import DatasetSpec
        from dimee.transport import Topics, open_transport
        from producers import sources
        from producers.producer import produce

        settings = _settings(broker, None, topic_prefix, kafka_api_version)
        stop = _start(log_level, None)
        records: list | object
        total = None
        if source.startswith("split:"):
            records = sources.from_split(DatasetSpec(name=dataset, seed=seed), source[6:], settings.data_dir)
            total = len(records)  # type: ignore[arg-type]
        elif source == "-":
            records = sources.from_lines(sys.stdin)
        else:
            records = sources.from_file(Path(source), text_col, label_col or None, id_col=id_col)
        if drift:
            records = sources.drift_order(records, [d for d in drift.split(",") if d])  # type: ignore[arg-type]
            total = len(records)
        transport = open_transport(settings.broker, settings.api_version_tuple(), client_id="dimee-producer")
        sent = produce(transport, Topics(settings.topic_prefix), records, rate=rate, count=count,  # type: ignore[arg-type]
                       stop=stop, total=total, progress=sys.stderr.isatty())
        typer.echo(f"produced {sent} samples to {Topics(settings.topic_prefix).samples}")

    @app.command("route")
    def route_cmd(
        workdir: WorkdirOpt = Path("artifacts/demo"),
        policy: PolicyOpt = "auto",
        adaptive: AdaptiveOpt = False,
        reseed: Annotated[bool, typer.Option(help="Seed the state store from calibration.json first "
                                                  "(overwrites adapted centroids).")] = False,
        group: Annotated[str | None, typer.Option(help="Consumer group (default PREFIX.router).")] = None,
        broker: BrokerOpt = None, state: StateOpt = None, topic_prefix: PrefixOpt = None,
        kafka_api_version: ApiOpt = None, max_batch: MaxBatchOpt = 64, max_wait_ms: MaxWaitOpt = 20.0,
        idle_exit: IdleExitOpt = None, metrics_port: MetricsOpt = None, log_level: LogOpt = "INFO",
    ) -> None:
        """Pick each sample's start tier before any transformer layer runs (default: the policy `dimee study`
        chose on calibration, else the paper's nearest-centroid DIMEE-F) and publish it to that tier."""
        import threading

        from dimee.offline import model_dir
        from dimee.routing_policy import resolve
        from dimee.transport import Topics, open_transport
        from routers.router import FeedbackApplier, Router
        from state import open_store

        settings = _settings(broker, state, topic_prefix, kafka_api_version)
        stop = _start(log_level, metrics_port)
        cal = _calibration(workdir)
        chosen = resolve(workdir, "DIMEE-D" if adaptive else policy)
        store = open_store(settings.state, cal.model_id, settings.seen_ttl_s)
        if reseed:
            store.seed(cal.centroid_arrays(), cal.pool_sizes)
        elif not store.is_seeded():
            raise DimeeError(f"no centroids in {settings.state} for model {cal.model_id!r}: pass --reseed to seed "
                             "them from calibration.json")
        topics = Topics(settings.topic_prefix)
        transport = open_transport(settings.broker, settings.api_version_tuple(), client_id="dimee-router")
        router = Router(transport, topics, [topics.samples], group or f"{topics.prefix}.router", stop=stop,
                        limits=_limits(max_batch, max_wait_ms), max_text_chars=settings.max_text_chars,
                        model_dir=model_dir(workdir), calibration=cal, store=store, adaptive=chosen.adaptive,
                        policy=chosen.router)
        typer.echo(f"routing policy: {chosen.name}", err=True)
        if chosen.feedback:
            applier = FeedbackApplier(transport, topics, [topics.feedback], f"{topics.prefix}.feedback", stop=stop,
                                      router=router)
            threading.Thread(target=applier.run, kwargs={"idle_exit_s": idle_exit}, daemon=True).start()
        router.run(idle_exit_s=idle_exit)

    @app.command("seed")
    def seed_cmd(
        workdir: WorkdirOpt = Path("artifacts/demo"), state: StateOpt = None,
    ) -> None:
        """Write calibration.json's centroids to the state store (replaces adapted ones; forgets seen ids)."""
        from state import open_store

        settings = _settings(None, state, None, None)
        cal = _calibration(workdir)
        store = open_store(settings.state, cal.model_id, settings.seen_ttl_s)
        store.seed(cal.centroid_arrays(), cal.pool_sizes)
        store.close()
        typer.echo(f"seeded {len(cal.centroids)} pools for model {cal.model_id!r} in {settings.state}")

    @app.command("work")
    def work_cmd(
        tier: Annotated[Tier, typer.Option(help="Which partition to serve: mobile (layers 1..m), edge (1..n) "
                                                "or cloud (1..L).")],
        workdir: WorkdirOpt = Path("artifacts/demo"),
        group: Annotated[str | None, typer.Option(help="Consumer group (default PREFIX.worker.TIER).")] = None,
        escalation: Annotated[str, typer.Option(
            help="auto (from WORKDIR/policy.json, else off), off (answer at the cap, as the paper), recompute "
                 "(next tier from layer 1) or continue (next tier from the cap, fp16 hidden state attached)."
        )] = "auto",
        feedback: Annotated[bool | None, typer.Option(
            help="Report observed pools on the feedback topic (default: as the policy says).")] = None,
        broker: BrokerOpt = None, topic_prefix: PrefixOpt = None, kafka_api_version: ApiOpt = None,
        max_batch: MaxBatchOpt = 32, max_wait_ms: MaxWaitOpt = 20.0, idle_exit: IdleExitOpt = None,
        metrics_port: MetricsOpt = None, log_level: LogOpt = "INFO",
    ) -> None:
        """Serve one tier: batched early exit at α* on the tier's partition; publish predictions."""
        from dimee.offline import model_dir
        from dimee.routing_policy import resolve
        from dimee.transport import Topics, open_transport
        from workers.tier_worker import TierWorker

        if escalation not in ("auto", "off", "recompute", "continue"):
            raise DimeeError(f"--escalation must be auto, off, recompute or continue, not {escalation!r}")
        settings = _settings(broker, None, topic_prefix, kafka_api_version)
        stop = _start(log_level, metrics_port)
        cal = _calibration(workdir)
        default = resolve(workdir, "auto")
        mode = default.escalation if escalation == "auto" else escalation
        topics = Topics(settings.topic_prefix)
        worker = TierWorker(open_transport(settings.broker, settings.api_version_tuple(),
                                           client_id=f"dimee-{tier.value}"),
                            topics, [topics.tier(tier.value)], group or f"{topics.prefix}.worker.{tier.value}",
                            stop=stop, limits=_limits(max_batch, max_wait_ms), max_text_chars=settings.max_text_chars,
                            tier=tier, model_dir=model_dir(workdir), calibration=cal, escalation=mode,  # type: ignore[arg-type]
                            feedback=default.feedback if feedback is None else feedback)
        worker.run(idle_exit_s=idle_exit)

    @app.command("sink")
    def sink_cmd(
        out: Annotated[Path, typer.Option(help="JSONL file the predictions are appended to (each id once).")],
        group: Annotated[str | None, typer.Option(help="Consumer group (default PREFIX.sink).")] = None,
        broker: BrokerOpt = None, topic_prefix: PrefixOpt = None, kafka_api_version: ApiOpt = None,
        idle_exit: IdleExitOpt = None, metrics_port: MetricsOpt = None, log_level: LogOpt = "INFO",
    ) -> None:
        """Write predictions to JSONL, deduplicated by id."""
        from dimee.transport import Topics, open_transport
        from predictions.sink import Sink

        settings = _settings(broker, None, topic_prefix, kafka_api_version)
        stop = _start(log_level, metrics_port)
        topics = Topics(settings.topic_prefix)
        sink = Sink(open_transport(settings.broker, settings.api_version_tuple(), client_id="dimee-sink"), topics,
                    [topics.predictions], group or f"{topics.prefix}.sink", stop=stop, path=out)
        sink.run(idle_exit_s=idle_exit)
        typer.echo(sink.stats.line())

    @app.command("tail")
    def tail_cmd(
        workdir: Annotated[Path | None, typer.Option(help="Folder with calibration.json, for the cloud-only "
                                                          "cost (default 1.0).")] = None,
        broker: BrokerOpt = None, topic_prefix: PrefixOpt = None, kafka_api_version: ApiOpt = None,
        idle_exit: IdleExitOpt = None, log_level: LogOpt = "WARNING",
    ) -> None:
        """Live view of the predictions: throughput, accuracy, cost vs cloud-only, tier shares, latency."""
        import os

        from dimee.transport import Topics, open_transport
        from predictions.tail import Tail

        settings = _settings(broker, None, topic_prefix, kafka_api_version)
        stop = _start(log_level, None)
        cloud = 1.0
        if workdir is not None:
            cal = _calibration(workdir)
            cloud = cal.cost_model.cloud_only(cal.num_layers)
        topics = Topics(settings.topic_prefix)
        tail = Tail(open_transport(settings.broker, settings.api_version_tuple(), client_id="dimee-tail"), topics,
                    [topics.predictions], f"{topics.prefix}.tail-{os.getpid()}", stop=stop, cloud_only_cost=cloud)
        tail.run(idle_exit_s=idle_exit)
        typer.echo(tail.stats.line())

    @app.command("pipeline")
    def pipeline_cmd(
        workdir: WorkdirOpt = Path("artifacts/demo"),
        dataset: Annotated[str, typer.Option(help="Dataset whose split is streamed.")] = "rt-sentences",
        split: Annotated[str, typer.Option(help="Which split to stream.")] = "test",
        count: Annotated[int | None, typer.Option(min=1, help="Stream only the first N samples.")] = None,
        policy: PolicyOpt = "auto",
        adaptive: AdaptiveOpt = False,
        reseed: Annotated[bool, typer.Option(help="Seed the state store from calibration.json (always done "
                                                  "for memory://).")] = False,
        out: Annotated[Path | None, typer.Option(help="Also write the predictions as JSONL here.")] = None,
        broker: BrokerOpt = None, state: StateOpt = None, topic_prefix: PrefixOpt = None,
        kafka_api_version: ApiOpt = None, max_batch: MaxBatchOpt = 32, max_wait_ms: MaxWaitOpt = 20.0,
        log_level: LogOpt = "WARNING",
    ) -> None:
        """Producer, router, three workers and sink in one process; prints accuracy, cost and throughput."""
        from dimee.data import DatasetSpec
        from dimee.pipeline import run_pipeline
        from dimee.routing_policy import resolve
        from producers.sources import from_split

        settings = _settings(broker, state, topic_prefix, kafka_api_version)
        _start(log_level, None)
        cal = _calibration(workdir)
        records = from_split(DatasetSpec(name=dataset), split, settings.data_dir)[:count]
        chosen = resolve(workdir, "DIMEE-D" if adaptive else policy)
        typer.echo(f"routing policy: {chosen.name}", err=True)
        run = run_pipeline(records, workdir / "model", cal, settings, policy=chosen,
                           reseed=reseed or settings.state.startswith("memory://"),
                           limits=_limits(max_batch, max_wait_ms), sink_path=out)
        typer.echo(json.dumps(run.summary, indent=2))
