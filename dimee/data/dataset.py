"""The in-memory form every loader returns: parallel lists of text, optional pair, label and domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from dimee.common.errors import DataError
from dimee.data.splits import stratified_subset
from dimee.streaming.messages import clip_text


@dataclass
class TextDataset:
    name: str
    texts: list[str]
    labels: list[int]
    label_names: list[str]
    text_pairs: list[str] | None = None
    domains: list[str] | None = None
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # long texts are cut as the stream cuts them, so offline scores equal what is served
        self.texts = [clip_text(t) for t in self.texts]
        if self.text_pairs is not None:
            self.text_pairs = [clip_text(t) for t in self.text_pairs]
        if not self.ids:
            self.ids = [f"{self.name}-{i}" for i in range(len(self.texts))]
        lengths = {len(self.texts), len(self.labels), len(self.ids)}
        lengths |= {len(self.text_pairs)} if self.text_pairs is not None else set()
        lengths |= {len(self.domains)} if self.domains is not None else set()
        if len(lengths) != 1:
            raise ValueError(f"dataset {self.name}: columns have different lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def subset(self, indices: Sequence[int], name: str | None = None) -> TextDataset:
        pick = list(indices)
        return TextDataset(
            name=name or self.name,
            texts=[self.texts[i] for i in pick],
            labels=[self.labels[i] for i in pick],
            label_names=self.label_names,
            text_pairs=[self.text_pairs[i] for i in pick] if self.text_pairs is not None else None,
            domains=[self.domains[i] for i in pick] if self.domains is not None else None,
            ids=[self.ids[i] for i in pick],
        )

    def records(self) -> list[dict]:
        """One dict per sample, in the shape of a stream `sample` message (without timestamps)."""
        out = []
        for i in range(len(self)):
            record = {"id": self.ids[i], "text": self.texts[i], "label": self.labels[i]}
            if self.text_pairs is not None:
                record["text_pair"] = self.text_pairs[i]
            if self.domains is not None:
                record["meta"] = {"domain": self.domains[i]}
            out.append(record)
        return out


@dataclass
class Splits:
    train: TextDataset
    calibration: TextDataset
    test: TextDataset

    def with_calibration_subset(self, samples: int | None, seed: int = 0) -> Splits:
        """These splits calibrating on a stratified subset of `samples` of the calibration split (None: all)."""
        if samples is None:
            return self
        if not 2 <= samples <= len(self.calibration):
            raise DataError(f"--calibration-samples must be between 2 and the calibration split's "
                            f"{len(self.calibration)} samples, not {samples}")
        chosen = stratified_subset(self.calibration.labels, samples, seed)
        return replace(self, calibration=self.calibration.subset(chosen.tolist()))

    def get(self, name: str) -> TextDataset:
        if name not in ("train", "calibration", "test"):
            raise DataError(f"unknown split {name!r}: use train, calibration or test")
        return getattr(self, name)
