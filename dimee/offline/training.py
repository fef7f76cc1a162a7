"""Joint fine-tuning of the backbone and every exit head; the checkpoint is chosen on the calibration split."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from dimee.common.choices import LossWeighting, Pooling
from dimee.data.dataset import TextDataset
from dimee.model.early_exit import EarlyExitEncoder
from dimee.model.tokenize import encode

PROGRESS_EVERY_S = 30.0
"""Where stderr is no terminal (a log, a pipe), tqdm's bar is off: a loop says how far it is this often."""


class _ProgressLines:
    """The part of tqdm the loops here use, for a log: a line on stderr at most every PROGRESS_EVERY_S,
    `epoch 1/3: 120/400 batches, loss 0.4123`, instead of nothing for minutes."""

    def __init__(self, items: list, desc: str) -> None:
        self.items, self.desc, self.postfix = items, desc, ""

    def set_postfix(self, **values: object) -> None:
        self.postfix = "".join(f", {name} {value}" for name, value in values.items())

    def __iter__(self) -> Iterator:
        last = time.monotonic()
        for done, item in enumerate(self.items, 1):
            yield item
            if time.monotonic() - last >= PROGRESS_EVERY_S:
                last = time.monotonic()
                print(f"{self.desc}: {done}/{len(self.items)} batches{self.postfix}", file=sys.stderr, flush=True)


def progress(items: list, desc: str, leave: bool = True) -> tqdm | _ProgressLines:
    """A progress bar over batches on a terminal, progress lines elsewhere."""
    if sys.stderr.isatty():
        return tqdm(items, desc=desc, unit="batch", leave=leave)
    return _ProgressLines(items, desc)


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    seed: int = 0
    loss: LossWeighting = "mean"
    max_train_samples: int | None = None
    base_model: str | None = None  # hub id or local folder; None: the bundled all-MiniLM-L6-v2
    pooling: Pooling = "mean"
    max_length: int = 64  # tokens per sample after truncation
    distil: float = 0.0  # self-distillation weight: every earlier exit also learns the last exit's answer


@dataclass
class TrainHistory:
    train_loss: list[float] = field(default_factory=list)
    calibration_exit_accuracy: list[list[float]] = field(default_factory=list)
    best_epoch: int = -1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def joint_loss(logits: list[torch.Tensor], labels: torch.Tensor, weighting: LossWeighting,
               distil: float = 0.0) -> torch.Tensor:
    """Mean of the exits' cross-entropies, or PABEE's Σ i·CE_i / Σ i (later exits weigh more); plus, with
    `distil` > 0, that weight times the mean KL divergence of every earlier exit from the last exit's softmax
    (self-distillation, as in FastBERT): a cascade is promised accuracy *against the full model*, so an exit that
    learns to say what the last layer says can answer more samples for the same promise. The last exit is the
    teacher as it is (detached, temperature 1): the labels alone train it."""
    losses = torch.stack([torch.nn.functional.cross_entropy(out, labels) for out in logits])
    if weighting == "pabee":
        weights = torch.arange(1, len(logits) + 1, dtype=losses.dtype)
        loss = (weights * losses).sum() / weights.sum()
    else:
        loss = losses.mean()
    if distil > 0 and len(logits) > 1:
        teacher = torch.nn.functional.log_softmax(logits[-1].detach(), dim=-1)
        gaps = [torch.nn.functional.kl_div(torch.nn.functional.log_softmax(out, dim=-1), teacher,
                                           reduction="batchmean", log_target=True) for out in logits[:-1]]
        loss = loss + distil * torch.stack(gaps).mean()
    return loss


def batches(data: TextDataset, batch_size: int, order: list[int] | None = None) -> Iterator[list[int]]:
    order = list(range(len(data))) if order is None else order
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def batch_tensors(tokenizer: PreTrainedTokenizerBase, data: TextDataset, idx: list[int], max_length: int):
    pairs = [data.text_pairs[i] for i in idx] if data.text_pairs is not None else None
    return encode(tokenizer, [data.texts[i] for i in idx], pairs, max_length)


@torch.inference_mode()
def record_exit_probabilities(
    model: EarlyExitEncoder, tokenizer: PreTrainedTokenizerBase, data: TextDataset,
    batch_size: int = 64, desc: str = "recording exits",
) -> tuple[np.ndarray, np.ndarray]:
    """(N, L, C) softmax of every exit and (N, H) routing embeddings: the full model run once."""
    model.eval()
    probs, embeddings = [], []
    # Longest-first order keeps padding low; results go back to the original order.
    order = sorted(range(len(data)), key=lambda i: -len(data.texts[i]))
    for idx in progress(list(batches(data, batch_size, order)), desc, leave=False):
        inputs = batch_tensors(tokenizer, data, idx, model.spec.max_length)
        probs.append(model.exit_probabilities(**inputs).float().numpy())
        embeddings.append(model.routing_embedding(**inputs).float().numpy())
    inverse = np.argsort(np.array(order))
    return np.concatenate(probs)[inverse], np.concatenate(embeddings)[inverse]


def exit_accuracies(probs: np.ndarray, labels: list[int] | np.ndarray) -> list[float]:
    return (probs.argmax(-1) == np.asarray(labels)[:, None]).mean(0).tolist()


def train(
    model: EarlyExitEncoder, tokenizer: PreTrainedTokenizerBase, train_data: TextDataset,
    calibration_data: TextDataset, config: TrainConfig,
) -> TrainHistory:
    """Fine-tune in place; at the end the weights are those of the epoch with the best mean exit accuracy
    on the calibration split (all exits count, because every one of them may answer)."""
    seed_everything(config.seed)
    rng = random.Random(config.seed)
    order = list(range(len(train_data)))
    if config.max_train_samples is not None:
        rng.shuffle(order)
        order = order[: config.max_train_samples]
    steps = config.epochs * ((len(order) + config.batch_size - 1) // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps), steps)
    history = TrainHistory()
    best_score, best_state = -1.0, None
    for epoch in range(config.epochs):
        model.train()
        rng.shuffle(order)
        total, count = 0.0, 0
        bar = progress(list(batches(train_data, config.batch_size, order)), f"epoch {epoch + 1}/{config.epochs}")
        for idx in bar:
            inputs = batch_tensors(tokenizer, train_data, idx, model.spec.max_length)
            labels = torch.tensor([train_data.labels[i] for i in idx])
            loss = joint_loss(model(**inputs), labels, config.loss, config.distil)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
            bar.set_postfix(loss=f"{total / count:.4f}")
        probs, _ = record_exit_probabilities(model, tokenizer, calibration_data, desc="calibration accuracy")
        accuracies = exit_accuracies(probs, calibration_data.labels)
        history.train_loss.append(total / max(count, 1))
        history.calibration_exit_accuracy.append(accuracies)
        score = float(np.mean(accuracies))
        tqdm.write(f"epoch {epoch + 1}: loss {total / max(count, 1):.4f}, calibration accuracy per exit "
                   + " ".join(f"{a:.3f}" for a in accuracies))
        if score > best_score:
            best_score, history.best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
