"""A tier worker: holds only its partition (layers 1..cap), runs micro-batches with batched early exit at
the policy's threshold for this tier (α* unless the policy says otherwise), and publishes one prediction per
sample with its path, exit layer, confidence, cost and timings.

With escalation on, a sample not sure enough at the cap goes to the next tier's topic instead
(`recompute`: it starts again at layer 1; `continue`: its fp16 hidden state travels with it). With feedback
on, the worker also reports the sample's observed pool, known for free from where it exited.

A share of the samples a lower tier answers (`--audit-rate`, chosen by id: `dimee.streaming.audit`) is also sent to
the last tier as an audit copy; there the whole model runs on it and an `Audit` (agree or not, its cost) goes to
the audits topic. The answer stands: an audit measures, it does not correct."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from dimee.state.base import copy_mark
from dimee.workers.audit_copies import AuditCopies
from transformers import PreTrainedTokenizerBase

from dimee import __version__
from dimee.method.control import offset_thresholds
from dimee.method.routing_policy import POLICIES, RoutingPolicy
from dimee.method.tiers import Tier, hidden_state_kb
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.early_exit import EarlyExitEncoder, ExitResult, Resume
from dimee.model.spec import load_spec
from dimee.model.tokenize import encode
from dimee.streaming import metrics
from dimee.streaming.audit import AuditPlan
from dimee.streaming.deployment import Deployment
from dimee.streaming.health import HEALTH
from dimee.streaming.messages import (
    Audit,
    AuditOf,
    CostBreakdown,
    Feedback,
    Hop,
    Prediction,
    Routed,
    Timings,
    worker_context,
)
from dimee.streaming.runtime import log
from dimee.streaming.stage import Output, Stage, StageContext
from dimee.streaming.transport.base import Record

T = TypeVar("T")


# Samples per early-exit pass on a CPU with one or two threads. A pass costs its longest sample's length
# times its size (padding), so a micro-batch is sorted by length and run in passes of this many: 1.4-1.5x
# the samples/s of one pass over a batch of 32 in arrival order (`make bench`, figure d). With more threads,
# or on a GPU, big passes keep the hardware busy and win (benchmarks/device_benchmark.py: one pass of 256
# on an H200 ran 6-13x the samples/s of passes of 8), so there the micro-batch is one pass.
SUB_BATCH = 8


def pass_size(device: str, threads: int) -> int | None:
    """Samples per early-exit pass (None: the whole micro-batch)."""
    return SUB_BATCH if device == "cpu" and threads <= 2 else None


def similar_lengths(items: list[T], size: int | None, length: Callable[[T], int]) -> list[list[T]]:
    """The items sorted by length, in consecutive runs of `size` (all of them: one run)."""
    ordered = sorted(items, key=length)
    size = size or max(1, len(ordered))
    return [ordered[i: i + size] for i in range(0, len(ordered), size)]


def pack_hidden(hidden: torch.Tensor) -> str:
    return base64.b64encode(hidden.to(torch.float16).numpy().tobytes()).decode("ascii")


def unpack_hidden(blob: str, hidden_size: int) -> torch.Tensor:
    """The (tokens, hidden_size) state a lower tier carried up; ValueError if it is not one a model can resume
    from (not base64, a partial token, a NaN or infinity: it would run to a NaN confidence)."""
    array = np.frombuffer(base64.b64decode(blob, validate=True), dtype=np.float16).reshape(-1, hidden_size)
    if not np.isfinite(array).all():
        raise ValueError("the carried hidden state is not finite (NaN or infinity)")
    return torch.from_numpy(array.astype(np.float32))


@dataclass(frozen=True)
class TierRule:
    """How this tier serves one policy: its exit threshold, when it escalates, whether the hidden state goes up."""

    policy: RoutingPolicy
    exit_threshold: float
    escalate_below: float
    escalates: bool
    carries_hidden: bool


@dataclass(frozen=True)
class Outcome:
    """What the partition said about one sample of a micro-batch."""

    message: Routed
    row: int
    start: int
    exit_layer: int
    confidence: float
    label_pred: int

    @property
    def layers_run(self) -> int:
        return self.exit_layer - self.start


class TierWorker(Stage):
    message_type = Routed

    def __init__(self, context: StageContext, deployment: Deployment, tier: Tier,
                 group_id: str | None = None) -> None:
        self.tier = Tier(tier)
        self.name = f"worker-{self.tier.value}"
        topics = context.topics
        super().__init__(context, [topics.tier(self.tier.value)], group_id or topics.worker_group(self.tier.value))
        HEALTH.expect(self.name, "loading its model")
        self.calibration = deployment.calibration
        self.plan = self.calibration.plan
        self.cap, self.next_tier = self.plan.cap(self.tier), self.plan.next_tier(self.tier)
        self.default_rule = self.rule(deployment.policy)  # for messages the router did not stamp
        self.full_model_rule = self.rule(POLICIES["Cloud-only"])  # for audit copies: no early exit
        self.audit_rate, self.auditor = context.settings.audit_rate, self.plan.tiers[-1]
        self.audit_plan = AuditPlan(self.audit_rate, self.auditor.value)
        audits_of = [t.value for t in self.plan.tiers[:-1]] if self.tier == self.auditor and self.audit_rate > 0 else []
        metrics.start_worker(self.tier.value, self.next_tier.value if self.next_tier else None,
                             CostBreakdown.model_fields, audits_of)
        makes_copies = self.audit_rate > 0 and self.tier != self.auditor
        self.copies = AuditCopies.open(context.settings, deployment.state_id, self.tier.value, self.name) \
            if makes_copies else AuditCopies(None, self.tier.value)
        self._copied: dict[str, str] = {}  # this batch's audit copies: id → the answer each checks
        metrics.DEPLOYMENT.info({"role": self.name, "policy_of_unstamped": deployment.policy.name,
                                 "alpha_star": f"{self.calibration.alpha:.4f}", "cap": str(self.cap),
                                 "model": self.calibration.model_id, "version": __version__})
        log.info("serving", stage=self.name, cap=self.cap, policy_of_unstamped=deployment.policy.name,
                 alpha_star=round(self.calibration.alpha, 4), note="stamped messages: the router's policy")
        self._rules: dict[tuple[RoutingPolicy, float], TierRule] = {}
        self.device = torch.device(context.settings.device)
        self.spec = load_spec(deployment.workdir.model)
        # The partition loads on a thread while open() makes the producer, the topics and the consumer.
        loader = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-load")
        self._partition = loader.submit(self._load, deployment.workdir.model)
        loader.shutdown(wait=False)  # the load still runs; its thread ends with it
        self.pass_size = pass_size(self.device.type, torch.get_num_threads())
        self.model_name = f"{self.calibration.model_id}:{self.tier.value}:1-{self.cap}"
        self.worker_id = context.instance(self.name)
        # what a routed message must fit to be served here (checked at parse; see messages.Routed)
        self.facts = worker_context(self.tier, self.plan, len(self.calibration.centroids), self.spec.hidden_size)

    def _load(self, folder: Path) -> tuple[EarlyExitEncoder, PreTrainedTokenizerBase]:
        return load_model(folder, num_layers=self.cap).to(self.device), load_tokenizer(folder)

    @property
    def model(self) -> EarlyExitEncoder:
        return self._partition.result()[0]

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._partition.result()[1]

    def open(self) -> None:
        super().open()
        self._partition.result()  # loaded before the group is joined; a load error surfaces here

    def rule(self, policy: RoutingPolicy) -> TierRule:
        thresholds, index = policy.served_thresholds(self.calibration), self.plan.index(self.tier)
        onward = self.next_tier is not None
        return TierRule(policy, thresholds.exit_at(index), thresholds.escalate_below(index),
                        policy.escalation != "off" and onward, policy.escalation == "continue" and onward)

    def _rule_of(self, message: Routed) -> TierRule:
        """The policy the router stamped on the message (one choice for router and workers), else the default;
        below the last tier, with the live offset the router stamped added to its thresholds."""
        offset = message.control.offset if message.control is not None and self.tier != self.auditor else 0.0
        if message.policy is None and offset == 0.0:
            return self.default_rule
        key = (message.policy or self.default_rule.policy, offset)
        if key not in self._rules:
            base = self.rule(key[0])
            exit_at, below = offset_thresholds(base.exit_threshold, base.escalate_below, offset)
            self._rules[key] = TierRule(base.policy, exit_at, below, base.escalates, base.carries_hidden)
        return self._rules[key]

    def parse_context(self) -> dict:
        return {**super().parse_context(), "num_labels": self.calibration.num_labels, **self.facts}

    def process(self, batch: list[tuple[Record, Routed]]) -> list[Output]:
        self._copied = {}
        outputs = self._serve(batch)
        self.copies.record(self._copied)  # before the copies go out: the controller finds the record first
        return outputs

    def _serve(self, batch: list[tuple[Record, Routed]]) -> list[Output]:
        groups: dict[tuple, list[Routed]] = {}  # (start layer, policy, live control, audit copy)
        for _, message in batch:  # below cap: parse
            key = (message.start_layer, message.policy, message.control, message.audit_of is not None)
            groups.setdefault(key, []).append(message)
        outputs: list[Output] = []
        for (start, _, _, audits), messages in groups.items():
            rule = self.full_model_rule if audits else self._rule_of(messages[0])
            for chunk in similar_lengths(messages, self.pass_size, lambda m: len(m.text) + len(m.text_pair or "")):
                outputs.extend(self._audit(chunk) if audits else self._run(start, chunk, rule))
        return outputs

    def _pass(self, start: int, messages: list[Routed], rule: TierRule) -> tuple[ExitResult, list[int], dict]:
        """One early-exit pass over messages that all start at `start` under one rule: the result, each
        message's token count, and when the pass started and finished."""
        started = time.time()
        pairs = [m.text_pair for m in messages] if any(m.text_pair for m in messages) else None
        inputs = encode(self.tokenizer, [m.text for m in messages], pairs, self.spec.max_length)
        lengths = inputs["attention_mask"].sum(1).tolist()
        hidden = self._carried_hidden(start, messages, lengths, inputs["input_ids"].shape[1])
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        hidden = None if hidden is None else hidden.to(self.device)
        result = self.model.early_exit(inputs, alpha=rule.exit_threshold, cap=self.cap,
                                       resume=None if hidden is None else Resume(start, hidden),
                                       keep_hidden=rule.carries_hidden)
        return result, lengths, {"started_at": started, "finished_at": time.time()}

    def _run(self, start: int, messages: list[Routed], rule: TierRule) -> list[Output]:
        """Messages that all start at `start` under one policy, each answered or escalated."""
        result, lengths, timings = self._pass(start, messages, rule)
        outputs = []
        for row, message in enumerate(messages):
            outcome = Outcome(message, row, start, int(result.exit_layer[row]), float(result.confidence[row]),
                              int(result.pred[row]))
            if rule.escalates and outcome.confidence < rule.escalate_below:
                outputs.append(self._escalate(outcome, result, lengths[row], rule))
            else:
                outputs.extend(self._answer(outcome, timings, rule))
        return outputs

    def _carried_hidden(self, start: int, messages: list[Routed], lengths: list[int],
                        width: int) -> torch.Tensor | None:
        """The hidden states escalated samples brought from the previous tier (start > 0), padded to width. A
        state with another token count than the text is not this text's (ValueError: that record is dead-lettered)."""
        if start == 0:
            return None
        size = self.spec.hidden_size
        hidden = torch.zeros(len(messages), width, size)
        for row, message in enumerate(messages):
            state = unpack_hidden(message.hidden_fp16 or "", size)
            if state.shape[0] != lengths[row]:
                raise ValueError(f"the carried hidden state has {state.shape[0]} tokens, the text {lengths[row]}")
            hidden[row, : lengths[row]] = state
        return hidden

    def _hop_cost(self, outcome: Outcome) -> CostBreakdown:
        return self._hop_cost_of(outcome.layers_run)

    def _hop_cost_of(self, layers_run: int) -> CostBreakdown:
        return CostBreakdown(**self.calibration.cost_model.breakdown(self.tier, layers_run))

    def _count(self, prediction: Prediction) -> None:
        tier = self.tier.value
        metrics.PREDICTIONS.labels(tier).inc()
        metrics.LATENCY.labels(tier).observe(max(0.0, prediction.timings.finished_at - prediction.timings.produced_at))
        for component, value in prediction.cost.model_dump().items():
            metrics.COST.labels(tier, component).inc(value)
        if prediction.correct is not None:
            metrics.LABELLED.labels(tier).inc()
            metrics.CORRECT.labels(tier).inc(int(prediction.correct))

    def _escalate(self, outcome: Outcome, result: ExitResult, length: int, rule: TierRule) -> Output:
        """Pass the sample up to the next tier, with this hop's cost (and its hidden state for `continue`)."""
        assert self.next_tier is not None
        message = outcome.message
        cost = self._hop_cost(outcome)
        if rule.carries_hidden:  # the hidden state goes up with the sample: its bytes are priced too
            carried = self.calibration.cost_model.carry(hidden_state_kb(length, self.spec.hidden_size))
            cost = cost + CostBreakdown(processing=0.0, offload=carried, cloud=0.0, total=carried)
        hop = Hop(tier=self.tier, layers_run=outcome.layers_run, cost=cost)
        onward = message.model_copy(update={
            "tier": self.next_tier, "hops": [*message.hops, hop],
            "start_layer": self.cap if rule.policy.escalation == "continue" else 0,
            "hidden_fp16": pack_hidden(result.hidden[outcome.row, :length]) if rule.carries_hidden else None,
        })
        metrics.ESCALATIONS.labels(self.tier.value, self.next_tier.value).inc()
        return Output.of(self.topics.tier(self.next_tier.value), onward)

    def _answer(self, outcome: Outcome, timings: dict[str, float], rule: TierRule) -> list[Output]:
        """The prediction (costs of every hop summed), and the observed pool when feedback is on."""
        message = outcome.message
        total = self._hop_cost(outcome)
        for hop in message.hops:
            total = total + hop.cost
        prediction = Prediction(
            id=message.id, tier=self.tier, label_pred=outcome.label_pred,
            label_name=self.spec.label_names[outcome.label_pred], confidence=outcome.confidence,
            exit_layer=outcome.exit_layer, layers_run=outcome.layers_run + sum(h.layers_run for h in message.hops),
            cost=total, label=message.label,
            correct=None if message.label is None else outcome.label_pred == message.label,
            model=self.model_name, worker=self.worker_id, pool=message.pool,
            path=[*(h.tier for h in message.hops), self.tier], meta=message.meta, digest=message.digest,
            timings=Timings(produced_at=message.produced_at, routed_at=message.routed_at, **timings),
        )
        self._count(prediction)
        outputs = [Output.of(self.topics.predictions, prediction)]
        if self.audit_plan.audits(self.tier.value, message.id):
            check = AuditOf(tier=self.tier, label_pred=outcome.label_pred, confidence=outcome.confidence,
                            exit_layer=outcome.exit_layer)
            copy = message.model_copy(update={"tier": self.auditor, "hops": [], "start_layer": 0, "hidden_fp16": None,
                                              "audit_of": check})
            outputs.append(Output.of(self.topics.tier(self.auditor.value), copy))
            self._copied[message.id] = copy_mark(self.tier.value, outcome.label_pred)
        reached = outcome.confidence >= self.calibration.alpha
        if rule.policy.feedback and (reached or self.next_tier is None):
            note = Feedback(id=message.id, text=message.text, text_pair=message.text_pair, routed_pool=message.pool,
                            observed_pool=self.plan.pool_of_exit(outcome.exit_layer))
            outputs.append(Output.of(self.topics.feedback, note))
        return outputs

    def _audit(self, messages: list[Routed]) -> list[Output]:
        """Audit copies: the whole model on each, an `Audit` of its answer against the lower tier's."""
        result, _, _ = self._pass(0, messages, self.full_model_rule)
        shadow = self._hop_cost_of(self.cap)  # the text to this tier, every layer here
        outputs = []
        for row, message in enumerate(messages):
            assert message.audit_of is not None
            checked, full_pred = message.audit_of, int(result.pred[row])
            audit = Audit(id=message.id, tier=checked.tier, label_pred=checked.label_pred, full_pred=full_pred,
                          agree=full_pred == checked.label_pred, label=message.label, cost=shadow,
                          worker=self.worker_id, digest=message.digest)
            metrics.AUDITS.labels(checked.tier.value, "agree" if audit.agree else "disagree").inc()
            for component, value in shadow.model_dump().items():
                metrics.COST.labels("audit", component).inc(value)
            outputs.append(Output.of(self.topics.audits, audit))
        return outputs
