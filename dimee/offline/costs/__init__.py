"""Costs from measurement (`dimee costs`, docs/costs.md): on the machine it runs on, the per-layer latency of
every tier partition and the bytes every hop carries, turned into a `CostModel` with prices the user gives.

The conversion, per sample (KB = 1000 bytes on the wire):

    λ_t  = price per ms on tier t × measured ms per sample per layer of t's partition
    o_e  = edge charge  + price per KB of the edge link  × KB(routed message up + prediction back)
    o_c  =                price per KB of the cloud link × KB(routed message up + prediction back)
    κ    = cloud charge
    o_hidden_per_kb = price per KB of hidden state carried by a `continue` escalation

Normalised (the default), every constant but β is divided by what a cloud-only sample costs at those prices
(o_c + κ + λ_c·L), so a cloud-only sample costs exactly 1.0: the units of DESIGN.md's constants and of every
report. The router runs on the mobile, so the mobile's own routed message is free.

torch is imported only where a model runs, so prices and files can be handled without it.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from dimee.common.errors import DataError, DimeeError
from dimee.common.workdir import Workdir
from dimee.method.tiers import CostModel, Tier, TierPlan
from dimee.streaming.messages import DEFAULT_MAX_TEXT_CHARS, CostBreakdown, Hop, Prediction, Routed, Timings

if TYPE_CHECKING:
    import torch

    from dimee.data import DatasetSpec
    from dimee.model.early_exit import EarlyExitEncoder

KB = 1000
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson")
# Float fields of the messages sized here carry full-precision values (17 digits), as measured costs,
# confidences and distances do on the wire: a short stand-in such as 0.2 would understate every message.
_FULL = 1 / 3


# -- what is measured on --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Texts:
    """Real texts to measure on (with their second sentences, for pairs) and where they came from."""

    texts: list[str]
    pairs: list[str | None] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def batches(self, size: int) -> Iterator[tuple[list[str], list[str | None] | None]]:
        for start in range(0, len(self.texts), size):
            pairs = None if self.pairs is None else self.pairs[start:start + size]
            yield self.texts[start:start + size], pairs


def _first(texts: list[str], pairs: list[str | None] | None, count: int, source: str) -> Texts:
    """The first `count` texts a producer could send: blank ones and ones over the stream's limit are skipped."""
    keep = [i for i, text in enumerate(texts) if text.strip() and len(text) <= DEFAULT_MAX_TEXT_CHARS][:count]
    if not keep:
        raise DataError(f"{source}: no non-blank text to measure on")
    kept_pairs = None if pairs is None else [pairs[i] if (pairs[i] or "").strip() else None for i in keep]
    return Texts([texts[i] for i in keep], kept_pairs, source)


def texts_from_file(path: Path, text_col: str, pair_col: str | None, count: int) -> Texts:
    """The first `count` texts of a file: a table (.csv/.tsv/.jsonl, column `text_col`), else one per line."""
    from dimee.data.loaders import read_table

    if path.suffix.lower() not in TABLE_SUFFIXES:
        try:
            return _first(path.read_text(encoding="utf-8").splitlines(), None, count, str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read texts from {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    rows = read_table(path)
    missing = [col for col in (text_col, pair_col) if col and rows and col not in rows[0]]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r} (columns: {', '.join(rows[0])})")
    pairs = [row.get(pair_col or "") for row in rows] if pair_col else None
    return _first([row.get(text_col, "") for row in rows], pairs, count, str(path))


def texts_from_split(spec: DatasetSpec, split: str, data_dir: Path, count: int) -> Texts:
    from dimee.data import load_splits

    part = load_splits(spec, data_dir).get(split)
    return _first(part.texts, part.text_pairs, count, f"{spec.name}:{split}")


def plan_for(workdir: Workdir, m: int | None, n: int | None) -> TierPlan:
    """The tier caps to measure: --m/--n where given, else calibration.json's, else L/3 and 2L/3."""
    from dimee.method.calibration import Calibration, default_m_n
    from dimee.model.spec import load_spec

    num_layers = load_spec(workdir.model).num_layers
    if m is None and n is None and workdir.calibration.exists():
        return Calibration.load(workdir.calibration).plan
    default_m, default_n = default_m_n(num_layers)
    try:
        return TierPlan.default(default_m if m is None else m, default_n if n is None else n, num_layers)
    except ValueError as exc:
        raise DimeeError(f"--m/--n: {exc}") from exc


# -- latency --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeasureConfig:
    """How to measure: texts per batch, timed repeats (the median is kept) after one warm-up pass, torch threads,
    and where to say what is being done (None: quietly)."""

    batch_size: int = 32
    repeats: int = 5
    threads: int = 1
    progress: Callable[[str], None] | None = None

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)


@dataclass(frozen=True)
class PartitionTimes:
    """ms per sample: the embedding layer, and each layer run with its exit head (what a served layer costs)."""

    embedding_ms: float
    layer_ms: list[float]

    @property
    def ms_per_layer(self) -> float:
        return statistics.fmean(self.layer_ms)


def _time_pass(model: EarlyExitEncoder, batches: list[dict[str, torch.Tensor]]) -> list[float]:
    """Seconds of one pass over every batch: in the embedding layer ([0]) and in each layer with its head
    ([i+1]), every sample through every layer of the partition."""
    seconds = [0.0] * (model.num_layers + 1)
    for inputs in batches:
        mask = inputs["attention_mask"]
        start = time.perf_counter()
        hidden = model.embed(inputs["input_ids"], inputs.get("token_type_ids"))
        seconds[0] += time.perf_counter() - start
        for i in range(model.num_layers):
            start = time.perf_counter()
            hidden = model.run_layer(i, hidden, mask)
            model.heads[i](hidden, mask).softmax(-1).max(-1)  # early exit reads the head after every layer
            seconds[i + 1] += time.perf_counter() - start
    return seconds


def _medians(runs: list[list[float]], samples: int) -> PartitionTimes:
    """Per position, the median over the timed passes, in ms per sample."""
    medians = [1000.0 * statistics.median(column) / samples for column in zip(*runs, strict=True)]
    return PartitionTimes(embedding_ms=medians[0], layer_ms=medians[1:])


def time_partitions(workdir: Workdir, plan: TierPlan, texts: Texts,
                    config: MeasureConfig) -> dict[Tier, PartitionTimes]:
    """Each tier's partition, loaded as its worker loads it (layers 1..cap only), timed on `texts` batched as a
    worker batches them (padded to the longest sample). The partitions take turns within every repeat, so a
    machine busy for a while slows them alike; the first round warms caches and is dropped."""
    import torch

    from dimee.model.artifacts import load_model, load_tokenizer
    from dimee.model.tokenize import encode

    models = {tier: load_model(workdir.model, cap) for tier, cap in plan}
    tokenizer, max_length = load_tokenizer(workdir.model), next(iter(models.values())).spec.max_length
    batches = [encode(tokenizer, chunk, pairs, max_length) for chunk, pairs in texts.batches(config.batch_size)]
    runs: dict[Tier, list[list[float]]] = {tier: [] for tier in models}
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with torch.inference_mode():
            for repeat in range(config.repeats + 1):
                config.say("warm-up round" if repeat == 0 else f"timed round {repeat}/{config.repeats}")
                for tier, model in models.items():
                    seconds = _time_pass(model, batches)
                    runs[tier].extend([seconds] if repeat else [])
    finally:
        torch.set_num_threads(threads)  # a process-wide setting: leave it as found
    return {tier: _medians(runs[tier], len(texts)) for tier in models}


# -- bytes per hop --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HopBytes:
    """Mean bytes of the messages one tier receives and sends (None: the tier escalates to no other)."""

    routed: float
    prediction: float
    escalation: float | None
    hidden: float | None


def _routed(index: int, text: str, pair: str | None, tier: Tier, pool: int) -> Routed:
    """The message the router sends a tier, with every field a real one carries."""
    return Routed(id=f"sample-{index:08d}", text=text, text_pair=pair, tier=tier, pool=pool,
                  distances=[_FULL * (k + 1) for k in range(3)], centroid_version=1,
                  router=f"router-{platform.node()}-{os.getpid()}", digest="0" * 16)


def _escalated(routed: Routed, plan: TierPlan, tokens: int, hidden_size: int) -> Routed:
    """The `continue` escalation of `routed` from its tier: one more hop and the fp16 hidden state at the cap,
    packed as workers.tier_worker.pack_hidden packs it (base64 of tokens × hidden fp16 values)."""
    tier, cap = routed.tier, plan.cap(routed.tier)
    hop = Hop(tier=tier, layers_run=cap, cost=CostBreakdown(processing=_FULL, offload=_FULL, cloud=_FULL, total=_FULL))
    blob = base64.b64encode(bytes(2 * tokens * hidden_size)).decode("ascii")
    return routed.model_copy(update={"tier": plan.next_tier(tier), "hops": [hop], "start_layer": cap,
                                     "hidden_fp16": blob})


def _prediction(routed: Routed, cap: int) -> Prediction:
    now = time.time()
    worker = f"worker-{routed.tier.value}-{platform.node()}-{os.getpid()}"
    return Prediction(id=routed.id, tier=routed.tier, label_pred=1, confidence=_FULL, exit_layer=cap, layers_run=cap,
                      cost=CostBreakdown(processing=_FULL, offload=_FULL, cloud=_FULL, total=_FULL),
                      model=f"model:{routed.tier.value}:1-{cap}", worker=worker, pool=routed.pool, path=[routed.tier],
                      digest=routed.digest, timings=Timings(produced_at=now, routed_at=now, started_at=now,
                                                            finished_at=now))


def token_counts(workdir: Workdir, texts: Texts) -> list[int]:
    """Tokens per text as a worker encodes it: the length of the hidden state an escalation carries."""
    from dimee.model import tokenize
    from dimee.model.artifacts import load_tokenizer
    from dimee.model.spec import load_spec

    return tokenize.token_counts(load_tokenizer(workdir.model), texts.texts, texts.pairs,
                                 load_spec(workdir.model).max_length)


def hop_bytes(plan: TierPlan, texts: Texts, tokens: list[int], hidden_size: int) -> dict[Tier, HopBytes]:
    """Mean JSON bytes (as sent: Message.to_bytes) of each tier's routed message, its prediction and, where a
    next tier exists, its `continue` escalation and the hidden state inside it."""
    pairs = texts.pairs or [None] * len(texts)
    out = {}
    for pool, (tier, cap) in enumerate(plan):
        routed = [_routed(i, text, pair, tier, pool) for i, (text, pair) in enumerate(zip(texts.texts, pairs,
                                                                                          strict=True))]
        up, down = [len(r.to_bytes()) for r in routed], [len(_prediction(r, cap).to_bytes()) for r in routed]
        escalation = hidden = None
        if plan.next_tier(tier) is not None:
            onward = [_escalated(r, plan, n, hidden_size) for r, n in zip(routed, tokens, strict=True)]
            escalation = statistics.fmean(len(e.to_bytes()) for e in onward)
            hidden = statistics.fmean(len(e.hidden_fp16 or "") for e in onward)
        out[tier] = HopBytes(statistics.fmean(up), statistics.fmean(down), escalation, hidden)
    return out


# -- the measured figures -------------------------------------------------------------------------------------
class Machine(BaseModel):
    """Where the figures were measured: they hold for that machine only."""

    platform: str
    cpu: str
    cpu_count: int
    torch_threads: int
    torch: str
    python: str


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def this_machine(threads: int) -> Machine:
    import torch

    return Machine(platform=platform.platform(), cpu=_cpu_name(), cpu_count=os.cpu_count() or 1,
                   torch_threads=threads, torch=torch.__version__, python=platform.python_version())


class TierFigures(BaseModel):
    """One tier's measured figures: ms per sample (per layer and in the embedding layer), mean message bytes."""

    tier: Tier
    layers: int
    ms_per_layer: float
    layer_ms: list[float]
    embedding_ms: float
    routed_bytes: float
    prediction_bytes: float
    escalation_bytes: float | None = None
    hidden_bytes: float | None = None

    @property
    def link_kb(self) -> float:
        """KB moved between the mobile and this tier per sample served there: routed message up, prediction back."""
        return (self.routed_bytes + self.prediction_bytes) / KB


class Measured(BaseModel):
    """The raw figures behind a measured cost model: the file's `measured` section."""

    date: str
    machine: Machine
    model: str
    num_layers: int
    hidden_size: int
    texts: str
    samples: int
    mean_tokens: float
    batch_size: int
    repeats: int
    tiers: list[TierFigures]
    pricing: dict[str, Any] | None = None
    raw_cloud_only: float | None = None

    def tier(self, tier: Tier) -> TierFigures | None:
        return next((figures for figures in self.tiers if figures.tier is tier), None)


def measure(workdir: Workdir, plan: TierPlan, texts: Texts, config: MeasureConfig) -> Measured:
    """Latency of every partition and bytes of every hop, on this machine, for the model in WORKDIR/model."""
    from dimee.model.spec import load_spec

    spec = load_spec(workdir.model)
    times = time_partitions(workdir, plan, texts, config)
    config.say("sizing the messages of every hop")
    tokens = token_counts(workdir, texts)
    sizes = hop_bytes(plan, texts, tokens, spec.hidden_size)
    tiers = [TierFigures(tier=tier, layers=cap, ms_per_layer=times[tier].ms_per_layer, layer_ms=times[tier].layer_ms,
                         embedding_ms=times[tier].embedding_ms, routed_bytes=sizes[tier].routed,
                         prediction_bytes=sizes[tier].prediction, escalation_bytes=sizes[tier].escalation,
                         hidden_bytes=sizes[tier].hidden) for tier, cap in plan]
    return Measured(date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), machine=this_machine(config.threads),
                    model=str(workdir.model), num_layers=spec.num_layers, hidden_size=spec.hidden_size,
                    texts=texts.source, samples=len(texts), mean_tokens=statistics.fmean(tokens),
                    batch_size=config.batch_size, repeats=config.repeats, tiers=tiers)


# -- prices → cost model --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pricing:
    """What a ms of compute on each tier, a KB on each link and a request cost, in any one unit (see the module
    docstring). The defaults count in mobile-millisecond equivalents and echo DESIGN.md's choices: an edge ms
    costs half a mobile ms, cloud compute is inside the cloud charge, the cloud link costs twice the edge link
    per KB, and the hidden state travels at the edge link's price. Normalised, only their ratios matter."""

    price_per_ms_mobile: float = 1.0
    price_per_ms_edge: float = 0.5
    price_per_ms_cloud: float = 0.0
    price_per_kb_edge: float = 1.0
    price_per_kb_cloud: float = 2.0
    price_per_kb_hidden: float | None = None  # None: the edge link's price
    edge_charge: float = 5.0
    cloud_charge: float = 20.0
    beta: float = 0.3
    normalise: bool = True

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
                raise DimeeError(f"--{name.replace('_', '-')} must be a finite number ≥ 0, not {value}")


_SCALED = ("lambda_m", "lambda_e", "lambda_c", "o_e", "o_c", "kappa", "o_hidden_per_kb")


def raw_cost_model(measured: Measured, pricing: Pricing) -> CostModel:
    """The constants in the prices' own units (a tier missing from the plan costs nothing)."""

    def of(tier: Tier) -> TierFigures:
        return measured.tier(tier) or TierFigures(tier=tier, layers=0, ms_per_layer=0.0, layer_ms=[],
                                                  embedding_ms=0.0, routed_bytes=0.0, prediction_bytes=0.0)

    hidden = pricing.price_per_kb_edge if pricing.price_per_kb_hidden is None else pricing.price_per_kb_hidden
    return CostModel(lambda_m=pricing.price_per_ms_mobile * of(Tier.MOBILE).ms_per_layer,
                     lambda_e=pricing.price_per_ms_edge * of(Tier.EDGE).ms_per_layer,
                     lambda_c=pricing.price_per_ms_cloud * of(Tier.CLOUD).ms_per_layer,
                     o_e=pricing.edge_charge + pricing.price_per_kb_edge * of(Tier.EDGE).link_kb,
                     o_c=pricing.price_per_kb_cloud * of(Tier.CLOUD).link_kb,
                     kappa=pricing.cloud_charge, beta=pricing.beta, o_hidden_per_kb=hidden)


def priced(measured: Measured, pricing: Pricing) -> tuple[CostModel, Measured]:
    """The cost model (normalised so that cloud-only costs 1.0, unless pricing says not to) and the figures
    with the pricing and the raw cloud-only cost they were turned with."""
    raw = raw_cost_model(measured, pricing)
    cloud_only = raw.cloud_only(measured.num_layers)
    noted = measured.model_copy(update={"pricing": asdict(pricing), "raw_cloud_only": cloud_only})
    if not pricing.normalise:
        return raw, noted
    if not (math.isfinite(cloud_only) and cloud_only > 0):
        raise DimeeError("cannot normalise: a cloud-only sample costs 0 at these prices (give --cloud-charge, "
                         "--price-per-ms-cloud or --price-per-kb-cloud, or pass --no-normalise)")
    return raw.model_copy(update={name: getattr(raw, name) / cloud_only for name in _SCALED}), noted


def write_cost_model(path: Path, cost: CostModel, measured: Measured) -> None:
    """The CostModel fields, then the `measured` section (which CostModel.load ignores)."""
    cost.save(path, measured.model_dump(mode="json"))
