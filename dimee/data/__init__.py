"""Labelled text data: fetching from the package registries, loading many formats, fixed-seed splits."""

from dimee.data.dataset import Splits, TextDataset
from dimee.data.registry import DatasetSpec, load_splits

__all__ = ["DatasetSpec", "Splits", "TextDataset", "load_splits"]
