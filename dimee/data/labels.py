"""A model answers with its own label set: data is scored against it by label *name*, so a data set whose labels are
the model's (in any order, or only some of them) is mapped onto the model's ids, and one with a label the model
does not have is refused (a 2-class model on a 3-class file would report nonsense)."""

from __future__ import annotations

from dimee.common.errors import DataError
from dimee.data.dataset import TextDataset


def label_map(model_labels: list[str], data_labels: list[str], where: str) -> list[int]:
    """For each of the data's label ids, the model's id of the label with the same name."""
    unknown = [name for name in data_labels if name not in model_labels]
    if unknown:
        raise DataError(f"{where} is labelled {', '.join(data_labels)} but the model answers "
                        f"{', '.join(model_labels)} (unknown: {', '.join(unknown)}): use data with the model's "
                        "label set, or train on this data")
    return [model_labels.index(name) for name in data_labels]


def in_model_labels(model_labels: list[str], data: TextDataset) -> TextDataset:
    """`data` with its labels as the model's ids (the same object where they already are)."""
    if list(data.label_names) == list(model_labels):
        return data
    ids = label_map(model_labels, data.label_names, data.name)
    return TextDataset(data.name, data.texts, [ids[label] for label in data.labels], list(model_labels),
                       data.text_pairs, data.domains, data.ids)
