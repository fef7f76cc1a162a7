"""Where samples come from: a dataset split, a CSV/TSV/JSONL file, or stdin; optionally reordered into a
drift scenario (one domain after another)."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dimee.common.errors import DataError, DimeeError
from dimee.common.workdir import Workdir
from dimee.data import DatasetSpec, load_splits
from dimee.data.labels import label_map
from dimee.data.loaders import checked_rows, labels_to_ids
from dimee.model.spec import load_spec


@dataclass(frozen=True)
class SourceSpec:
    """Where `dimee produce` and `dimee pipeline` take samples from (their shared options)."""

    source: str = "split:test"  # split:NAME of `dataset`, a .csv/.tsv/.jsonl file, or - for stdin
    dataset: str = "rt-sentences"
    text_col: str = "text"
    label_col: str | None = "label"
    id_col: str | None = None
    drift: str | None = None  # domains sent one after another
    seed: int = 0


@dataclass
class Source:
    records: Iterable[dict]
    total: int | None  # None: not known before the end (stdin)
    label_names: list[str] | None  # the names of the labels' ids, where the source has labels
    file: Path | None = None  # where a file source was read from


def open_source(spec: SourceSpec, data_dir: Path) -> Source:
    """The samples of `spec`, checked whole before anything is sent (a file), drift-ordered if asked."""
    if spec.source.startswith("split:"):
        data = load_splits(DatasetSpec(name=spec.dataset, seed=spec.seed), data_dir).get(spec.source[6:])
        source = Source(data.records(), len(data), data.label_names)
    elif spec.source == "-":
        source = Source(from_lines(sys.stdin), None, None)
    else:
        records, names = read_file(Path(spec.source), spec.text_col, spec.label_col or None, id_col=spec.id_col)
        source = Source(records, len(records), names, Path(spec.source))
    if spec.drift:
        records = drift_order(source.records, [d for d in spec.drift.split(",") if d])
        source = Source(records, len(records), source.label_names, source.file)
    return source


def in_model_labels(model_labels: list[str], source: Source) -> list[dict]:
    """The source's records with their labels as the model's ids, mapped by name (`dimee.data.labels`): a label
    the model does not have is refused before anything is sent, as `dimee evaluate` refuses it."""
    records = list(source.records)
    if source.label_names is None or source.label_names == list(model_labels):
        return records
    ids = label_map(model_labels, source.label_names, "the source")
    return [{**r, "label": ids[r["label"]]} if r.get("label") is not None else r for r in records]


def for_the_model(source: Source, workdir: Path) -> Iterable[dict]:
    """What `dimee produce` sends: labels as the ids of the work folder's model, mapped by name as `dimee
    pipeline` maps them (`in_model_labels`; a name the model lacks is refused). Integer labels are ids already
    (a model without as many labels refuses them); a split's ids are its dataset's, as a model trained on it
    has them, so without a work folder they go as they are; names in a file cannot go without one: a file's
    names are numbered in sorted order, which says nothing of the model's ids (issue 30: `positive` sent as 0)."""
    names = source.label_names
    if names is None:
        return source.records  # stdin: read as it comes, never listed here
    try:
        model_labels: list[str] | None = load_spec(Workdir(workdir).model).label_names
    except DimeeError as exc:
        if source.file is not None and not _are_ids(names):
            raise DataError(f"{source.file} is labelled by name ({', '.join(names)}), which only the model can "
                            f"turn into its label ids: pass --workdir ({exc})") from exc
        model_labels = None
    if model_labels is None or (_are_ids(names) and len(names) <= len(model_labels)):
        return source.records
    return in_model_labels(model_labels, source)


def _are_ids(names: list[str]) -> bool:
    return names == [str(i) for i in range(len(names))]


def run_token() -> str:
    """Part of every id this run generates, so two runs over the same file or stdin never reuse an id (a
    reused id would be dropped downstream as a duplicate)."""
    return uuid.uuid4().hex[:8]


def read_file(path: Path, text_col: str = "text", label_col: str | None = "label", pair_col: str | None = None,
              id_col: str | None = None) -> tuple[list[dict], list[str] | None]:
    """Rows of a CSV/TSV/JSONL file, read and checked whole before anything is sent (a malformed file is
    refused, never half-sent), and the names of its label ids; labels mapped as everywhere else (integers as
    they are, names in sorted order); without an id column the id is FILE-RUN-ROW."""
    rows = checked_rows(path, text_col, pair_col, id_col)
    labels, names = _labels(rows, label_col, path)
    run = run_token()
    records = []
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        record: dict = {"id": row[id_col] if id_col else f"{path.stem}-{run}-{i}", "text": row[text_col]}
        if label is not None:
            record["label"] = label
        if pair_col:
            record["text_pair"] = row[pair_col]
        records.append(record)
    return records, names


def _labels(rows: list[dict[str, str]], label_col: str | None, path: Path) -> tuple[list[int | None],
                                                                                      list[str] | None]:
    """Labels mapped as everywhere else, and their names; a row without the label field (JSONL) is unlabelled, a
    row with an empty one is malformed."""
    given = [None if not label_col or label_col not in row else row[label_col] for row in rows]
    empty = [i for i, value in enumerate(given, start=1) if value is not None and not value.strip()]
    if empty:
        raise DataError(f"{path}: empty label at row {empty[0]}")
    if not any(given):
        return [None] * len(given), None
    ids, names = labels_to_ids([v for v in given if v is not None], str(path))
    found = iter(ids)
    return [None if value is None else next(found) for value in given], names


def from_lines(stream: IO[str], prefix: str = "stdin") -> Iterator[dict]:
    """One sample per line: a JSON object with at least `text`, or plain text; without an id, PREFIX-RUN-LINE."""
    run = run_token()
    for i, line in enumerate(stream):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"text": line}
        else:
            record = {"text": line}
        record.setdefault("id", f"{prefix}-{run}-{i}")
        yield record


def drift_order(records: Iterable[dict], domains: list[str]) -> list[dict]:
    """All samples of the first domain, then the second, ...: a stream whose distribution shifts."""
    records = list(records)
    by_domain: dict[str, list[dict]] = {d: [] for d in domains}
    for record in records:
        domain = record.get("meta", {}).get("domain")
        if domain in by_domain:
            by_domain[domain].append(record)
    missing = [d for d, rows in by_domain.items() if not rows]
    if missing:
        raise DataError(f"drift scenario: no samples of domain(s) {missing} in this source")
    return [record for d in domains for record in by_domain[d]]
