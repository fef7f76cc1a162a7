"""Parsers for every supported source; each raises DataError with the file and line on malformed input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from dimee.common.errors import DataError
from dimee.data.dataset import TextDataset

csv.field_size_limit(10_000_000)


def labels_to_ids(raw: list[str], where: str) -> tuple[list[int], list[str]]:
    """Integer labels stay as they are (names "0".."C-1"); any other labels get ids in sorted order."""
    values = [value.strip() for value in raw]
    if any(value == "" for value in values):
        raise DataError(f"{where}: empty label at row {values.index('') + 1}")
    try:
        ints = [int(value) for value in values]
    except ValueError:
        names = sorted(set(values))
        index = {name: i for i, name in enumerate(names)}
        return [index[value] for value in values], names
    if min(ints) < 0:
        raise DataError(f"{where}: negative label {min(ints)}")
    return ints, [str(i) for i in range(max(ints) + 1)]


def load_rt_sentences(path: Path) -> TextDataset:
    """TSV of id, mean rating, text. Label 1 if rating > 0, 0 if < 0; zero ratings are dropped."""
    texts, labels, ids = [], [], []
    with path.open(encoding="utf-8", newline="") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 3:
                raise DataError(f"{path}:{line_no}: expected 'id<TAB>rating<TAB>text', got {len(parts)} field(s)")
            try:
                rating = float(parts[1])
            except ValueError as exc:
                raise DataError(f"{path}:{line_no}: rating {parts[1]!r} is not a number") from exc
            if rating == 0:
                continue
            texts.append("\t".join(parts[2:]).strip())
            labels.append(1 if rating > 0 else 0)
            ids.append(f"rt-{parts[0].strip()}")
    if not texts:
        raise DataError(f"{path}: no labelled sentences")
    return TextDataset("rt-sentences", texts, labels, ["negative", "positive"], ids=ids)


def load_uci_sentences(folder: Path, domains: tuple[str, ...] = ("amazon", "imdb", "yelp")) -> TextDataset:
    """JSON arrays of {text, class}; the empty trailing record of each file is skipped."""
    texts, labels, domain_of, ids = [], [], [], []
    for domain in domains:
        path = folder / f"{domain}.json"
        if not path.exists():
            raise DataError(f"{path} is missing: run `dimee data fetch uci-sentences`")
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or not row.get("text") or row.get("class") is None:
                continue
            if row["class"] not in (0, 1):
                raise DataError(f"{path}: record {i} has class {row['class']!r}, expected 0 or 1")
            texts.append(str(row["text"]).strip())
            labels.append(int(row["class"]))
            domain_of.append(domain)
            ids.append(f"{domain}-{i}")
    return TextDataset("uci-sentences", texts, labels, ["negative", "positive"], domains=domain_of, ids=ids)


def _bbc_article(path: Path) -> str:
    """Title and body on one line: 'Title. First paragraph …', cut to what a stream message may carry."""
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError:
        content = raw.decode("latin-1")  # one article of the 2,225 is Latin-1 (a £ sign)
    lines = [" ".join(line.split()) for line in content.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    title, body = lines[0], " ".join(lines[1:])
    return f"{title}{'' if title[-1] in '.?!' else '.'} {body}".strip()


def load_bbc_news(folder: Path) -> TextDataset:
    """One article per FOLDER/TOPIC/NNN.txt; the topic folder is the label (topics in sorted order).

    Verbatim repeats are kept once (the first in folder and file order)."""
    topics = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not topics:
        raise DataError(f"{folder}: no topic folders: run `dimee data fetch bbc-news`")
    texts, labels, ids, seen = [], [], [], set()
    for label, topic in enumerate(topics):
        for path in sorted((folder / topic).glob("*.txt")):
            text = _bbc_article(path)
            if not text:
                raise DataError(f"{path}: empty article")
            if text in seen:  # the corpus repeats 100 articles verbatim: a copy must not land in two splits
                continue
            seen.add(text)
            texts.append(text)
            labels.append(label)
            ids.append(f"bbc-{topic}-{path.stem}")
    if not texts:
        raise DataError(f"{folder}: no articles (*.txt) in {', '.join(topics)}")
    return TextDataset("bbc-news", texts, labels, topics, ids=ids)


# BIG-bench's answer names → VitaminC's own labels (bigbench's convert_to_lm_format.py maps them one to one).
VITAMINC_LABELS = {"True": "supports", "False": "refutes", "Neither": "not-enough-info"}


def _vitaminc_example(example: object, where: str) -> tuple[str, str, int]:
    """(claim, 'Page: evidence', label id) from {'input': 'PAGE: EVIDENCE\\nClaim: CLAIM', 'target_scores'}."""
    if not isinstance(example, dict):
        raise DataError(f"{where}: expected a JSON object")
    evidence, separator, claim = str(example.get("input", "")).partition("\nClaim: ")
    scores = example.get("target_scores")
    gold = [name for name, score in scores.items() if score == 1] if isinstance(scores, dict) else []
    if not separator or not claim.strip() or not evidence.strip():
        raise DataError(f"{where}: input is not 'PAGE: EVIDENCE\\nClaim: CLAIM'")
    if len(gold) != 1 or gold[0] not in VITAMINC_LABELS:
        raise DataError(f"{where}: target_scores must mark exactly one of {', '.join(VITAMINC_LABELS)}")
    return claim.strip(), evidence.strip(), list(VITAMINC_LABELS).index(gold[0])


def load_vitaminc(path: Path) -> TextDataset:
    """BIG-bench's VitaminC task file: text = the claim, text_pair = 'Page: evidence', three labels."""
    if not path.exists():
        raise DataError(f"{path} is missing: run `dimee data fetch vitaminc`")
    try:
        examples = json.loads(path.read_text(encoding="utf-8")).get("examples")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise DataError(f"{path}: not a BIG-bench task file (a JSON object with 'examples')") from exc
    if not isinstance(examples, list) or not examples:
        raise DataError(f"{path}: no examples")
    claims, evidence, labels = [], [], []
    for i, example in enumerate(examples):
        claim, context, label = _vitaminc_example(example, f"{path}: example {i}")
        claims.append(claim)
        evidence.append(context)
        labels.append(label)
    return TextDataset("vitaminc", claims, labels, list(VITAMINC_LABELS.values()), text_pairs=evidence,
                       ids=[f"vitaminc-{i}" for i in range(len(claims))])


def read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV, TSV or JSONL file as dicts of strings (format from the suffix)."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        with path.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{line_no}: expected a JSON object")
                rows.append({k: "" if v is None else str(v) for k, v in row.items()})
        return rows
    if suffix not in (".csv", ".tsv", ".tab", ".txt"):
        raise DataError(f"{path}: unknown format {suffix!r}: use .csv, .tsv or .jsonl")
    delimiter = "," if suffix == ".csv" else "\t"
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
        rows = []
        for row in reader:
            if None in row:  # more fields than the header names
                raise DataError(f"{path}:{reader.line_num}: more fields than the header has columns")
            rows.append({k: "" if v is None else v for k, v in row.items()})
    return rows


def checked_rows(path: Path, text_col: str, *columns: str | None) -> list[dict[str, str]]:
    """The rows of a table, refused whole if empty, missing a column, or with a row without text."""
    rows = read_table(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    for column in (text_col, *columns):
        if column is not None and column not in rows[0]:
            raise DataError(f"{path}: no column {column!r} (columns: {', '.join(rows[0])})")
    for i, row in enumerate(rows, start=1):
        if not row.get(text_col, "").strip():
            raise DataError(f"{path}: row {i} has an empty {text_col!r}")
    return rows


def load_table(path: Path, text_col: str = "text", label_col: str = "label",
               pair_col: str | None = None) -> TextDataset:
    rows = checked_rows(path, text_col, label_col, pair_col)
    labels, label_names = labels_to_ids([row[label_col] for row in rows], str(path))
    return TextDataset(
        name=path.stem,
        texts=[row[text_col] for row in rows],
        labels=labels,
        label_names=label_names,
        text_pairs=[row[pair_col] for row in rows] if pair_col else None,
    )


# GLUE tasks as the standard TSV distribution lays them out: (file layout, text, pair, label) columns.
GLUE_TASKS: dict[str, dict] = {
    "sst2": {"folder": "SST-2", "text": "sentence", "pair": None, "label": "label"},
    "cola": {"folder": "CoLA", "header": False, "text": 3, "pair": None, "label": 1},
    "mrpc": {"folder": "MRPC", "text": "#1 String", "pair": "#2 String", "label": "Quality"},
    "qnli": {"folder": "QNLI", "text": "question", "pair": "sentence", "label": "label"},
    "mnli": {"folder": "MNLI", "text": "sentence1", "pair": "sentence2", "label": "gold_label",
             "dev": "dev_matched.tsv"},
    "qqp": {"folder": "QQP", "text": "question1", "pair": "question2", "label": "is_duplicate"},
}


def _read_glue_tsv(path: Path, task: dict) -> tuple[list[str], list[str] | None, list[str]]:
    if not path.exists():
        raise DataError(f"{path}: no such GLUE file")
    texts, pairs, labels = [], [], []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = None if task.get("header", True) is False else next(reader, None)
        def col(row: list[str], key: str | int) -> str:
            index = key if isinstance(key, int) else header.index(key)  # type: ignore[union-attr]
            return row[index]
        for line_no, row in enumerate(reader, start=2 if header else 1):
            try:
                texts.append(col(row, task["text"]))
                labels.append(col(row, task["label"]))
                if task["pair"] is not None:
                    pairs.append(col(row, task["pair"]))
            except (IndexError, ValueError) as exc:
                raise DataError(f"{path}:{line_no}: malformed GLUE row ({exc})") from exc
    return texts, (pairs if task["pair"] is not None else None), labels


def load_glue(folder: Path, task_name: str) -> tuple[TextDataset, TextDataset]:
    """(train, dev) of a GLUE task from its standard TSV folder (the task folder or its parent)."""
    task = GLUE_TASKS.get(task_name.lower())
    if task is None:
        raise DataError(f"unknown GLUE task {task_name!r}: choose one of {', '.join(GLUE_TASKS)}")
    if (folder / task["folder"]).is_dir():
        folder = folder / task["folder"]
    train_t, train_p, train_l = _read_glue_tsv(folder / "train.tsv", task)
    dev_t, dev_p, dev_l = _read_glue_tsv(folder / task.get("dev", "dev.tsv"), task)
    labels, names = labels_to_ids(train_l + dev_l, str(folder))
    name = f"glue-{task_name.lower()}"
    train = TextDataset(name, train_t, labels[: len(train_t)], names, text_pairs=train_p,
                        ids=[f"{name}-train-{i}" for i in range(len(train_t))])
    dev = TextDataset(name, dev_t, labels[len(train_t):], names, text_pairs=dev_p,
                      ids=[f"{name}-dev-{i}" for i in range(len(dev_t))])
    return train, dev


def load_hf(dataset: str, config: str | None, text_col: str, label_col: str,
            pair_col: str | None) -> tuple[TextDataset, TextDataset]:
    """(train, validation) from the Hugging Face hub, where one is reachable."""
    try:
        import datasets  # optional: pip install 'dimee[hf]'
    except ImportError as exc:
        raise DataError("the `datasets` package is not installed: pip install 'dimee[hf]'") from exc
    try:
        loaded = datasets.load_dataset(dataset, config)
    except Exception as exc:  # the hub client raises many types; the user needs the reason only
        raise DataError(f"cannot load {dataset} from the hub: {str(exc).splitlines()[0]}") from exc
    name = dataset.replace("/", "-") + (f"-{config}" if config else "")
    out = []
    for split in ("train", "validation"):
        part = loaded[split]
        labels = [int(v) for v in part[label_col]]
        names = part.features[label_col].names if hasattr(part.features[label_col], "names") else None
        out.append(TextDataset(
            name, list(part[text_col]), labels, names or [str(i) for i in range(max(labels) + 1)],
            text_pairs=list(part[pair_col]) if pair_col else None,
            ids=[f"{name}-{split}-{i}" for i in range(len(labels))],
        ))
    return out[0], out[1]
