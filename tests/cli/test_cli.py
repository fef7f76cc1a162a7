"""The CLI as a user meets it: --help everywhere, one-line errors, the embedded pipeline end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dimee.cli import app
from tests.support.helpers import tiny_workdir

DIMEE = str(Path(sys.executable).parent / "dimee")
COMMANDS = ["train", "calibrate", "evaluate", "demo", "produce", "route", "seed", "work", "sink", "tail", "pipeline",
            "up", "dashboard", "schema", "costs", "plan",
            "study", "experiment", "drift"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output) > 200


def _one_line_error(args: list[str], env: dict | None = None) -> str:
    proc = subprocess.run([DIMEE, *args], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_bad_arguments_and_missing_services_are_one_line_errors(tmp_path):
    workdir = tiny_workdir(tmp_path / "w")
    assert "objective must be" in _one_line_error(["calibrate", "--objective", "best"])
    kafka = ["--broker", "kafka://127.0.0.1:1"]
    assert "no broker: pass --broker" in _one_line_error(["route", "--workdir", str(workdir)])
    assert "run `dimee calibrate` first" in _one_line_error(["route", "--workdir", str(tmp_path / "none"), *kafka])
    assert "cannot reach Redis" in _one_line_error(
        ["route", "--workdir", str(workdir), "--state", "redis://127.0.0.1:1/0", *kafka])
    assert "unknown broker" in _one_line_error(
        ["route", "--workdir", str(workdir), "--reseed", "--broker", "amqp://x"])
    assert "pass --reseed" in _one_line_error(["route", "--workdir", str(workdir), *kafka])


def test_unknown_dataset_is_one_line(tmp_path):
    assert "unknown dataset" in _one_line_error(["data", "show", "--dataset", "imagenet"])


def test_pipeline_command_on_the_embedded_broker(tmp_path, monkeypatch):
    workdir = tiny_workdir(tmp_path / "w")
    data = tmp_path / "samples.jsonl"
    data.write_text("".join(json.dumps({"text": f"good movie {i}", "label": i % 2}) + "\n" for i in range(30)))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["pipeline", "--workdir", str(workdir), "--dataset", str(data),
                                      "--source", "split:test", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["count"] == len(out.read_text().splitlines()) > 0


def test_service_urls_are_printed_without_their_password():
    from dimee.streaming.config import redact

    assert redact("redis://:s3cret@cache.example:6380/2") == "redis://cache.example:6380/2"
    assert redact("rediss://user:pw@h/0") == "rediss://h/0" and redact("memory://") == "memory://"


def test_kafka_tls_and_sasl_come_from_the_environment_and_the_password_is_never_shown(monkeypatch):
    from dimee.streaming.config import Settings

    monkeypatch.setenv("DIMEE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DIMEE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("DIMEE_KAFKA_SASL_USERNAME", "dimee")
    monkeypatch.setenv("DIMEE_KAFKA_SASL_PASSWORD", "t0ps3cret")
    monkeypatch.setenv("DIMEE_KAFKA_SSL_CAFILE", "/etc/ca.pem")
    settings = Settings()
    assert settings.kafka_security() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "dimee",
        "sasl_plain_password": "t0ps3cret", "ssl_cafile": "/etc/ca.pem"}
    assert "t0ps3cret" not in repr(settings) and "t0ps3cret" not in str(settings.model_dump())


def test_a_role_started_before_its_broker_waits_and_stops_cleanly(tmp_path):
    """Topic creation used to sit outside the retry (the role exited after a minute) and a SIGTERM during the
    outage exited 2: now it waits like in any outage, and SIGTERM ends it with 0."""
    import os
    import signal
    import time

    workdir = tiny_workdir(tmp_path / "w")
    env = dict(os.environ, DIMEE_BROKER="kafka://127.0.0.1:1")
    log = tmp_path / "work.log"
    with log.open("w") as handle:
        proc = subprocess.Popen([DIMEE, "work", "--tier", "mobile", "--workdir", str(workdir)], env=env,
                                stdout=handle, stderr=handle)
    try:
        deadline = time.monotonic() + 120
        while "service unavailable, retrying" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        time.sleep(2)
        assert proc.poll() is None, log.read_text()  # still waiting for its broker
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, log.read_text()
    assert "service unavailable, retrying" in log.read_text() and "Traceback" not in log.read_text()


def _files(folder: Path) -> dict[str, Path]:
    files = {"two.csv": "text,label\na,0\nb,1\n", "broken.csv": 'text,label\nfine,pos\n"broken,neg\nmore,pos\n',
             "named.csv": "text,label\ngreat movie,pos\nbad movie,neg\ndull,neg\n"}
    for name, content in files.items():
        (folder / name).write_text(content)
    return {name: folder / name for name in files}


def test_each_user_mistake_is_one_line(tmp_path):
    files, kafka = _files(tmp_path), ["--broker", "kafka://127.0.0.1:1"]
    cases = [
        (["produce", "--source", str(files["named.csv"])], "no broker: pass --broker"),
        (["produce", "--source", str(files["broken.csv"]), *kafka], "broken.csv: empty label at row 2"),
        (["produce", "--source", "split:nope", *kafka], "unknown split 'nope'"),
        (["pipeline", "--source", "split:nope"], "unknown split 'nope'"),
        (["train", "--dataset", str(files["two.csv"])], "too few samples to split"),
        (["train", "--base-model", "./no-such-model"], "--base-model ./no-such-model: no such folder"),
        (["produce", "--kafka-api-version", "banana", *kafka], "--kafka-api-version (or DIMEE_KAFKA_API_VERSION)"),
        (["route", "--log-level", "LOUD"], "--log-level must be one of"),
        (["work", "--tier", "mobile", "--metrics-port", "99999"], "--metrics-port"),
        (["work", "--tier", "mobile", "--device", "gpu", *kafka], "--device (or DIMEE_DEVICE)"),
        (["work", "--tier", "mobile", "--device", "cuda:9", *kafka], "--device cuda:9: no such device here"),
    ]
    for args, expected in cases:
        assert expected in _one_line_error(args), args
    env = dict(os.environ, DIMEE_KAFKA_API_VERSION="banana")
    assert "DIMEE_KAFKA_API_VERSION" in _one_line_error(["produce", *kafka], env=env)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert f"cannot serve metrics on 127.0.0.1:{port}" in _one_line_error(
            ["work", "--tier", "mobile", "--metrics-port", port, *kafka])


def test_file_labels_are_mapped_as_everywhere():
    """Defect: `produce` from a CSV with string labels ended in a traceback; `data show` and `train` map them."""
    from dimee.producers.sources import SourceSpec, open_source

    from dimee.data.loaders import load_table

    folder = Path(tempfile.mkdtemp())
    path = _files(folder)["named.csv"]
    read = open_source(SourceSpec(source=str(path)), folder)
    assert [r["label"] for r in read.records] == load_table(path).labels == [1, 0, 0]


def test_an_unreachable_broker_is_reported_at_once(tmp_path):
    source = _files(tmp_path)["two.csv"]  # integer labels: sent as they are, no work folder needed
    proc = subprocess.Popen([DIMEE, "produce", "--source", str(source), "--broker", "kafka://127.0.0.1:1"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # the first line it writes: retried, but said plainly
        assert "cannot reach Kafka at 127.0.0.1:1" in line and "Traceback" not in line
    finally:
        proc.kill()
        proc.wait()


def _workdir_answering(folder: Path, labels: list[str]) -> Path:
    """A work folder whose model answers `labels` (only its spec: enough to map labels by name)."""
    from dimee.common.workdir import Workdir
    from dimee.model.spec import ModelSpec

    model = Workdir(folder).model
    model.mkdir(parents=True)
    spec = ModelSpec(backbone_config={}, num_labels=len(labels), label_names=labels)
    (model / Workdir.SPEC).write_text(spec.model_dump_json())
    return folder


def test_produce_sends_label_names_as_the_models_ids(tmp_path, monkeypatch):
    """Defect (issue 30 item 1): a CSV whose every row is `positive` was sent as "label": 0, which the model
    reads as negative: `produce` numbered the file's own names in sorted order. It maps them by name through
    the work folder's model, as `dimee pipeline` does."""
    from dimee.cli import options
    from dimee.streaming.transport.memory import shared_broker

    monkeypatch.setattr(options, "needs_a_broker", lambda settings: None)  # the embedded broker, read below
    workdir = _workdir_answering(tmp_path / "w", ["negative", "positive"])
    source = tmp_path / "all-positive.csv"
    source.write_text("text,label\ngreat,positive\nsuperb,positive\nfine,positive\n")
    broker = "memory://produce-label-names"
    result = CliRunner().invoke(app, ["produce", "--source", str(source), "--workdir", str(workdir),
                                      "--broker", broker, "--topic-prefix", "names"])
    assert result.exit_code == 0, result.output
    sent = [json.loads(r.value) for r in shared_broker(broker).read_all("names.samples")]
    assert [r["label"] for r in sent] == [1, 1, 1]


def test_produce_refuses_label_names_it_cannot_map(tmp_path):
    files, kafka = _files(tmp_path), ["--broker", "kafka://127.0.0.1:1"]
    named = ["produce", "--source", str(files["named.csv"]), *kafka]
    line = _one_line_error([*named, "--workdir", str(tmp_path / "none")])
    assert "named.csv is labelled by name (neg, pos)" in line and "pass --workdir" in line
    workdir = _workdir_answering(tmp_path / "w", ["negative", "positive"])
    odd = tmp_path / "odd.csv"
    odd.write_text("text,label\nawful,terrible\ngreat,positive\nmeh,bland\n")
    line = _one_line_error(["produce", "--source", str(odd), "--workdir", str(workdir), *kafka])
    assert "(unknown: bland, terrible)" in line


def test_a_jsonl_file_may_mix_labelled_and_unlabelled_rows(tmp_path):
    """Regression: rows without a label field (JSONL) are unlabelled, not an error; an empty label is."""
    from dimee.producers.sources import SourceSpec, open_source

    from dimee.common.errors import DataError

    mixed = tmp_path / "m.jsonl"
    mixed.write_text('{"text": "a", "label": "pos"}\n{"text": "b"}\n{"text": "c", "label": "neg"}\n')
    assert [r.get("label") for r in open_source(SourceSpec(source=str(mixed)), tmp_path).records] == [1, None, 0]
    mixed.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": ""}\n')
    with pytest.raises(DataError, match="empty label at row 2"):
        open_source(SourceSpec(source=str(mixed)), tmp_path)


# Passwords made of marked pieces ("PW…") joined by every character a URL gives a meaning to: whatever the
# parser makes of them, no piece may be printed.
NASTY_PASSWORDS = ["PWa@PWb", "PWa/PWb", "PWa?PWb", "PWa#PWb", "PWa:PWb", "PWa@PWb#PWc/PWd?PWe@PWf",
                   "PWa%40PWb", "PWa//PWb@@PWc", "PWa[::1]PWb", "PWa,PWb"]


@pytest.mark.parametrize("password", NASTY_PASSWORDS)
def test_no_part_of_a_password_is_ever_printed(password):
    """Defect: redis://:p@ss#w/rd@host:6379/0 was shown as redis://ss (a piece of the password)."""
    from dimee.streaming.config import redact

    cases = {f"redis://:{password}@cache.example:6380/2": "redis://cache.example:6380/2",
             f"rediss://USRx:{password}@h/0": "rediss://h/0",
             f"redis://:{password}@[::1]:6379/0": "redis://[::1]:6379/0",
             f"unix://:{password}@/run/redis.sock?db=1": "unix:///run/redis.sock",
             f"redis://h:6379/0?password={password.replace('@', '%40')}": "redis://h:6379/0"}
    for url, shown in cases.items():
        assert redact(url) == shown, url
        assert "PW" not in redact(url) and "USR" not in redact(url), url


def _main_error(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> str:
    """`dimee ARGS` in this process, through the entry point that prints a DimeeError: its one line."""
    from dimee.cli import main

    monkeypatch.setattr(sys, "argv", ["dimee", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_a_malformed_broker_or_state_url_is_one_line(tmp_path, capsys, monkeypatch):
    """Defect: a port that is no port, or out of range, was a traceback (redis) or an outage retried for good
    (kafka); an IPv6 host without brackets too. Each is now one line naming the option, at once."""
    source = _files(tmp_path)["named.csv"]
    produce, route = ["produce", "--source", str(source)], ["route", "--workdir", str(tmp_path / "none")]
    kafka = ["--broker", "kafka://127.0.0.1:1"]
    cases = [
        ([*produce, "--broker", "kafka://host:99999"], "--broker (or DIMEE_BROKER) kafka://host:99999: port 99999"),
        ([*produce, "--broker", "kafka://a:9092,host:notaport"], "'host:notaport' is not HOST:PORT"),
        ([*produce, "--broker", "kafka://::1:9092"], "in brackets, e.g. [::1]:9092"),
        ([*route, *kafka, "--state", "redis://host:notaport/0"], "--state (or DIMEE_STATE) redis://host:notaport/0"),
        ([*route, *kafka, "--state", "redis://host:99999/0"], "Port out of range"),
        ([*route, *kafka, "--state", "redis://host:6379/zero"], "the path names the database by number"),
    ]
    for args, expected in cases:
        assert expected in _main_error(args, capsys, monkeypatch), args
    line = _main_error([*route, *kafka, "--state", "redis://:PWa@PWb#PWc/PWd@host:6379/0"], capsys, monkeypatch)
    assert "percent-encode" in line and "redis://host:6379/0" in line and "PW" not in line
    monkeypatch.setenv("DIMEE_STATE", "redis://:PWa@host:99999/0")
    line = _main_error([*route, *kafka], capsys, monkeypatch)
    assert "DIMEE_STATE" in line and "Port out of range" in line and "PW" not in line


def test_ipv6_hosts_are_service_addresses(tmp_path, capsys, monkeypatch):
    """An IPv6 Redis is reached and named with its brackets ([::1], not ::1), as is an IPv6 broker."""
    from dimee.streaming.config import check_state_url, kafka_servers

    assert kafka_servers("kafka://[::1]:9092,[fe80::1%eth0]:9093") == ["[::1]:9092", "[fe80::1%eth0]:9093"]
    assert check_state_url("redis://:pw@[::1]:6379/0") == "redis://:pw@[::1]:6379/0"
    workdir = tiny_workdir(tmp_path / "w")
    line = _main_error(["route", "--workdir", str(workdir), "--state", "redis://[::1]:1/0",
                        "--broker", "kafka://[::1]:1"], capsys, monkeypatch)
    assert "cannot reach Redis at redis://[::1]:1/0" in line


def test_pipeline_takes_the_sources_produce_takes_and_refuses_labels_the_model_lacks(tmp_path, monkeypatch):
    """`dimee pipeline` streams a file (or a drift sequence, or stdin) as `produce` does; a file labelled with
    classes the model does not answer is refused in one line, as `dimee evaluate` refuses it, and one whose
    labels are the model's by name is mapped onto the model's ids."""
    workdir = tiny_workdir(tmp_path / "w")  # its model answers "0" and "1"
    monkeypatch.chdir(tmp_path)
    three = tmp_path / "three.jsonl"
    three.write_text("".join(json.dumps({"text": f"good movie {i}", "label": i % 3}) + "\n" for i in range(12)))
    error = _one_line_error(["pipeline", "--workdir", str(workdir), "--source", str(three)])
    assert "labelled 0, 1, 2 but the model answers 0, 1" in error
    two = tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps({"text": f"fine film {i}", "label": i % 2}) + "\n" for i in range(20)))
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["pipeline", "--workdir", str(workdir), "--source", str(two), "--out", str(out),
                                      "--audit-rate", "0"])
    assert result.exit_code == 0, result.output
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(predictions) == 20 and {p["label"] for p in predictions} == {0, 1}


def test_labels_are_mapped_onto_the_model_by_name():
    from dimee.common.errors import DataError
    from dimee.data.dataset import TextDataset
    from dimee.data.labels import in_model_labels

    data = TextDataset("swapped", ["a", "b", "c"], [0, 1, 1], ["positive", "negative"])
    mapped = in_model_labels(["negative", "positive"], data)
    assert mapped.labels == [1, 0, 0] and mapped.label_names == ["negative", "positive"]
    only = TextDataset("only", ["a"], [0], ["positive"])
    assert in_model_labels(["negative", "positive"], only).labels == [1]  # a subset of the model's labels
    with pytest.raises(DataError, match="labelled neutral, positive but the model answers negative, positive"):
        in_model_labels(["negative", "positive"], TextDataset("x", ["a"], [0], ["neutral", "positive"]))
