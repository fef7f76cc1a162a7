"""A BERT-family encoder with a classifier after every layer, run layer by layer with batched early exit.

A partition (mobile, edge, cloud) is the same class built with only its first k layers and heads; the
router's embedder is the same class with k = 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from dimee.common.choices import Pooling
from dimee.model.hf_classes import auto_class
from dimee.model.spec import ModelSpec


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over non-padding positions: (B, S, H), (B, S) → (B, H)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class ExitHead(nn.Module):
    """Pooling → dropout → linear, as docs/method.md fixes it."""

    def __init__(self, hidden_size: int, num_labels: int, pooling: Pooling, dropout: float) -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, mask)
        return self.classifier(self.dropout(pooled))


@dataclass(frozen=True)
class Resume:
    """Where a batch continues: `hidden` is the (B, S, H) state after `start_layer` layers, computed elsewhere."""

    start_layer: int
    hidden: torch.Tensor


@dataclass
class ExitResult:
    """Per-sample outcome of early exit; exit_layer is 1-based and equals the layers run."""

    pred: torch.Tensor
    confidence: torch.Tensor
    exit_layer: torch.Tensor
    hidden: torch.Tensor | None = None  # (B, S, H) at the exit layer, when asked for


class EarlyExitEncoder(nn.Module):
    def __init__(self, spec: ModelSpec, num_layers: int | None = None, backbone: nn.Module | None = None):
        super().__init__()
        self.spec = spec
        k = spec.num_layers if num_layers is None else num_layers
        if not 0 <= k <= spec.num_layers:
            raise ValueError(f"a partition holds 0..{spec.num_layers} layers, not {k}")
        if backbone is None:
            backbone = auto_class("AutoModel").from_config(spec.hf_config(num_layers=k), add_pooling_layer=False)
        if not hasattr(backbone, "embeddings") or not hasattr(getattr(backbone, "encoder", None), "layer"):
            raise ValueError(f"{type(backbone).__name__} is not a BERT-family encoder (embeddings + encoder.layer)")
        self.embeddings = backbone.embeddings
        self.layers = nn.ModuleList(list(backbone.encoder.layer)[:k])
        self.heads = nn.ModuleList(
            ExitHead(spec.hidden_size, spec.num_labels, spec.pooling, spec.dropout) for _ in range(k)
        )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    # -- building blocks ------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)

    def run_layer(self, index: int, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Additive mask broadcast over heads and query positions; works for eager and SDPA attention.
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        out = self.layers[index](hidden, attention_mask=additive)
        return out[0] if isinstance(out, tuple) else out

    def routing_embedding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None, raw: bool = False,
    ) -> torch.Tensor:
        """e(x): mean over real tokens of the embedding layer's output (or of raw word embeddings)."""
        with torch.inference_mode():
            if raw:
                hidden = self.embeddings.word_embeddings(input_ids)
            else:
                hidden = self.embed(input_ids, token_type_ids)
            return masked_mean(hidden, attention_mask)

    def packed_routing_embedding(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, lengths: torch.Tensor, raw: bool = False,
    ) -> torch.Tensor:
        """The same e(x) as `routing_embedding`, from the batch's tokens laid end to end (no padding): the
        embedding layer works token by token, so padding a batch to its longest sample only adds work — on
        short sentences more than half of it. (T,) ids and token types, (B,) lengths summing to T → (B, H)."""
        with torch.inference_mode():
            if raw:
                hidden = self.embeddings.word_embeddings(input_ids)
            else:
                starts = torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
                positions = torch.arange(len(input_ids)) - starts  # each sample's positions count from 0
                hidden = self.embeddings(input_ids=input_ids[None], token_type_ids=token_type_ids[None],
                                         position_ids=positions[None])[0]
            sample = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
            sums = torch.zeros(len(lengths), hidden.shape[-1], dtype=hidden.dtype).index_add_(0, sample, hidden)
            return sums / lengths.clamp(min=1).to(hidden.dtype)[:, None]

    # -- training -------------------------------------------------------------------------------------
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Logits of every exit head, layer 1 first."""
        hidden = self.embed(input_ids, token_type_ids)
        logits = []
        for i in range(self.num_layers):
            hidden = self.run_layer(i, hidden, attention_mask)
            logits.append(self.heads[i](hidden, attention_mask))
        return logits

    # -- inference ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def exit_probabilities(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, k, C) softmax of every head: what calibration and the offline evaluator record."""
        return torch.stack([logits.softmax(-1) for logits in self(input_ids, attention_mask, token_type_ids)], 1)

    @torch.inference_mode()
    def early_exit(self, inputs: Mapping[str, torch.Tensor], alpha: float = 1.0, cap: int | None = None,
                   resume: Resume | None = None, keep_hidden: bool = False) -> ExitResult:
        """Run the batch (tokenised `inputs`) layer by layer; after layer i every sample with conf_i ≥ alpha
        (or i = cap) leaves.

        Samples that leave are dropped from the batch (and trailing all-padding columns trimmed) before the
        next layer, so a batch costs what its samples cost one at a time. `resume` continues from a hidden
        state computed elsewhere (an escalated sample's). Runs on the device of the inputs (the model's);
        the result comes back on the host.
        """
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        start_layer, hidden = (resume.start_layer, resume.hidden) if resume is not None else (0, None)
        cap = self.num_layers if cap is None else cap
        if not start_layer < cap <= self.num_layers:
            raise ValueError(f"cap must be in {start_layer + 1}..{self.num_layers}, got {cap}")
        batch, device = input_ids.shape[0], input_ids.device
        pred = torch.empty(batch, dtype=torch.long, device=device)
        conf = torch.empty(batch, device=device)
        exit_layer = torch.empty(batch, dtype=torch.long, device=device)
        exit_hidden = [None] * batch if keep_hidden else None
        mask = attention_mask
        if hidden is None:
            hidden = self.embed(input_ids, inputs.get("token_type_ids"))
        active = torch.arange(batch, device=device)
        for i in range(start_layer, cap):
            hidden = self.run_layer(i, hidden, mask)
            probs = self.heads[i](hidden, mask).softmax(-1)
            best_conf, best = probs.max(-1)
            done = best_conf >= alpha if i + 1 < cap else torch.ones_like(best_conf, dtype=torch.bool)
            leaving = active[done]
            pred[leaving], conf[leaving], exit_layer[leaving] = best[done], best_conf[done], i + 1
            if exit_hidden is not None:
                for row, sample in zip(hidden[done], leaving.tolist(), strict=True):
                    exit_hidden[sample] = row
            stay = ~done
            if not bool(stay.any()):
                break
            active, hidden, mask = active[stay], hidden[stay], mask[stay]
            width = int(mask.any(0).nonzero().max()) + 1  # right padding: drop all-padding columns
            hidden, mask = hidden[:, :width], mask[:, :width]
        stacked = None
        if exit_hidden is not None:
            width = max(h.shape[0] for h in exit_hidden)
            stacked = torch.stack([nn.functional.pad(h, (0, 0, 0, width - h.shape[0])) for h in exit_hidden]).cpu()
        return ExitResult(pred.cpu(), conf.cpu(), exit_layer.cpu(), stacked)  # read per sample: on the host
