"""What a measurement runs on: real texts a producer could send, and the tiers with their caps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dimee.common.errors import DataError, DimeeError
from dimee.common.workdir import Workdir
from dimee.method.tiers import TierPlan
from dimee.streaming.messages import DEFAULT_MAX_TEXT_CHARS

if TYPE_CHECKING:
    from dimee.data import DatasetSpec

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson")


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
