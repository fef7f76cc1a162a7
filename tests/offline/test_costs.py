"""`dimee costs`: a cost model measured on the tiny BERT, written as a file CostModel.load reads, normalised so
that a cloud-only sample costs 1; bad arguments are one-line errors."""

from __future__ import annotations

import base64
import json
import math
import sys

import pytest
import torch
from typer.testing import CliRunner

from dimee.cli import app, main
from dimee.common.errors import DataError, DimeeError
from dimee.method.tiers import CostModel, Tier
from dimee.offline.costs import Measured, Pricing, TierFigures, priced, texts_from_file
from tests.support.helpers import sentences, tiny_workdir

FAST = ["--samples", "12", "--batch-size", "4", "--repeats", "2"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tiny_workdir(tmp_path_factory.mktemp("costs") / "w")


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text("\n".join(sentences(20, seed=3)) + "\n")
    return path


def _run(workdir, texts, out, *extra: str):
    result = CliRunner().invoke(app, ["costs", "--workdir", str(workdir), "--texts", str(texts), "--out", str(out),
                                      *FAST, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_measured_file_round_trips_through_cost_model_load(workdir, texts, tmp_path):
    out = tmp_path / "cost.json"
    output = _run(workdir, texts, out)
    assert f"written to {out}" in output and "ms/layer" in output
    cost = CostModel.load(out)
    document = json.loads(out.read_text())
    assert cost.model_dump() == {name: document[name] for name in CostModel.model_fields}
    assert cost.cloud_only(6) == pytest.approx(1.0)  # normalised by default
    measured = Measured.model_validate(document["measured"])
    assert [f.tier for f in measured.tiers] == [Tier.MOBILE, Tier.EDGE, Tier.CLOUD]
    assert measured.machine.cpu_count >= 1 and measured.machine.torch_threads == 1 and measured.date
    assert measured.samples == 12 and measured.hidden_size == 32 and measured.raw_cloud_only > 0


def test_the_figures_are_positive_and_finite(workdir, texts, tmp_path):
    out = tmp_path / "cost.json"
    _run(workdir, texts, out)
    measured = Measured.model_validate(json.loads(out.read_text())["measured"])
    for figures in measured.tiers:
        numbers = [figures.ms_per_layer, figures.embedding_ms, figures.routed_bytes, figures.prediction_bytes,
                   *figures.layer_ms]
        assert all(math.isfinite(x) and x > 0 for x in numbers), figures
        assert len(figures.layer_ms) == figures.layers
    cost = CostModel.load(out)
    assert all(math.isfinite(v) and v > 0 for k, v in cost.model_dump().items() if k != "lambda_c")


def test_the_hidden_state_is_sized_as_a_worker_packs_it(workdir, texts, tmp_path):
    from dimee.workers.tier_worker import pack_hidden

    out = tmp_path / "cost.json"
    _run(workdir, texts, out)
    measured = Measured.model_validate(json.loads(out.read_text())["measured"])
    mobile, cloud = measured.tier(Tier.MOBILE), measured.tier(Tier.CLOUD)
    tokens = measured.mean_tokens
    # Every text's state is base64 of tokens × hidden fp16 values; on average about 4/3 × 2 × tokens × hidden.
    one = len(pack_hidden(torch.zeros(round(tokens), measured.hidden_size)))
    assert mobile.hidden_bytes == pytest.approx(one, rel=0.1)
    assert len(base64.b64decode(pack_hidden(torch.zeros(3, 32)))) == 3 * 32 * 2
    assert mobile.escalation_bytes > mobile.hidden_bytes + mobile.routed_bytes * 0.9
    assert cloud.escalation_bytes is None and cloud.hidden_bytes is None  # the last tier escalates nowhere


def test_without_normalising_the_constants_are_the_prices_times_the_figures(workdir, texts, tmp_path):
    out = tmp_path / "raw.json"
    _run(workdir, texts, out, "--no-normalise", "--price-per-ms-mobile", "2", "--price-per-kb-edge", "3",
         "--edge-charge", "0.5", "--price-per-kb-hidden", "7", "--beta", "0.9")
    cost, document = CostModel.load(out), json.loads(out.read_text())
    measured = Measured.model_validate(document["measured"])
    mobile, edge = measured.tier(Tier.MOBILE), measured.tier(Tier.EDGE)
    assert cost.lambda_m == pytest.approx(2 * mobile.ms_per_layer)
    assert cost.o_e == pytest.approx(0.5 + 3 * (edge.routed_bytes + edge.prediction_bytes) / 1000)
    assert cost.o_hidden_per_kb == 7 and cost.beta == 0.9 and cost.kappa == Pricing().cloud_charge
    assert cost.cloud_only(6) == pytest.approx(measured.raw_cloud_only)


def _figures(tier: Tier, layers: int, ms: float, routed: float) -> TierFigures:
    return TierFigures(tier=tier, layers=layers, ms_per_layer=ms, layer_ms=[ms] * layers, embedding_ms=0.01,
                       routed_bytes=routed, prediction_bytes=500.0)


def _measured(**figures: float) -> Measured:
    machine = {"platform": "x", "cpu": "x", "cpu_count": 1, "torch_threads": 1, "torch": "x", "python": "x"}
    tiers = [_figures(Tier.MOBILE, 2, 2.0, 400.0), _figures(Tier.EDGE, 4, 2.0, 400.0),
             _figures(Tier.CLOUD, 6, figures.get("cloud_ms", 2.0), 400.0)]
    return Measured(date="2025-01-01", machine=machine, model="m", num_layers=6, hidden_size=384, texts="t",
                    samples=1, mean_tokens=26.0, batch_size=1, repeats=1, tiers=tiers)


def test_normalising_makes_a_cloud_only_sample_cost_one_and_keeps_the_ratios():
    pricing = Pricing(price_per_ms_cloud=0.25)
    cost, noted = priced(_measured(), pricing)
    raw, _ = priced(_measured(), Pricing(price_per_ms_cloud=0.25, normalise=False))
    assert cost.cloud_only(6) == pytest.approx(1.0)
    assert noted.raw_cloud_only == pytest.approx(raw.cloud_only(6)) and noted.pricing["price_per_ms_cloud"] == 0.25
    for name in ("lambda_m", "lambda_e", "lambda_c", "o_e", "o_c", "kappa", "o_hidden_per_kb"):
        assert getattr(cost, name) == pytest.approx(getattr(raw, name) / raw.cloud_only(6))
    assert cost.beta == raw.beta == 0.3
    # The defaults land near docs/method.md's constants on a machine that runs a MiniLM layer in about 2 ms.
    default, _ = priced(_measured(), Pricing())
    assert 0.05 < default.lambda_m < 0.15 and 0.02 < default.lambda_e < 0.08 and 0.1 < default.o_e < 0.4


def test_a_cloud_only_sample_that_costs_nothing_cannot_be_normalised():
    free = Pricing(price_per_kb_cloud=0.0, cloud_charge=0.0)
    with pytest.raises(DimeeError, match="cannot normalise"):
        priced(_measured(), free)
    assert priced(_measured(), Pricing(price_per_kb_cloud=0.0, cloud_charge=0.0, normalise=False))[0].kappa == 0


def test_cost_model_files(tmp_path):
    path = tmp_path / "cost.json"
    CostModel(lambda_m=0.2, o_hidden_per_kb=0.01).save(path)
    assert CostModel.load(path) == CostModel(lambda_m=0.2, o_hidden_per_kb=0.01)
    path.write_text(json.dumps({"lambda_m": 0.3, "measured": {"anything": 1}}))
    assert CostModel.load(path) == CostModel(lambda_m=0.3)  # the measured section is ignored
    assert CostModel().o_hidden_per_kb == 0 and CostModel().carry(10.0) == 0  # the paper's defaults are unchanged
    for text, reason in ((json.dumps({"lamda_m": 0.3}), "unknown cost model field"), ("{", "cannot read"),
                         (json.dumps({"kappa": -1}), "kappa"), ("[1]", "a JSON object")):
        path.write_text(text)
        with pytest.raises(DimeeError, match=reason):
            CostModel.load(path)
    with pytest.raises(DimeeError, match="no cost model"):
        CostModel.load(tmp_path / "none.json")


def test_texts_from_files(tmp_path):
    lines = tmp_path / "t.txt"
    lines.write_text("good movie\n\n  \nbad plot\nfun\n")
    assert texts_from_file(lines, "text", None, 2).texts == ["good movie", "bad plot"]
    table = tmp_path / "t.jsonl"
    table.write_text('{"review": "good", "other": "fun"}\n{"review": "bad", "other": ""}\n')
    pairs = texts_from_file(table, "review", "other", 10)
    assert pairs.texts == ["good", "bad"] and pairs.pairs == ["fun", None]
    with pytest.raises(DataError, match="no column 'text'"):
        texts_from_file(table, "text", None, 10)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n")
    with pytest.raises(DataError, match="no non-blank text"):
        texts_from_file(blank, "text", None, 10)


def _one_line_error(monkeypatch, capsys, args: list[str]) -> str:
    """What `dimee ARGS` prints, run as the console script runs it (dimee.cli.main)."""
    monkeypatch.setattr(sys, "argv", ["dimee", "costs", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 2 and len(lines) == 1, lines
    return lines[0]


def test_bad_arguments_are_one_line_errors(workdir, texts, tmp_path, monkeypatch, capsys):
    base = ["--workdir", str(workdir), "--texts", str(texts), "--out", str(tmp_path / "c.json"), *FAST]
    cases = [
        (["--samples", "0"], "--samples"),
        (["--price-per-ms-mobile", "-1"], "--price-per-ms-mobile"),
        (["--cloud-charge", "inf"], "--cloud-charge must be a finite number"),
        (["--split", "dev"], "--split must be one of"),
        (["--m", "4", "--n", "3"], "need 0 < m < n < L"),
        (["--price-per-kb-cloud", "0", "--cloud-charge", "0"], "cannot normalise"),
        (["--texts", str(tmp_path / "missing.txt")], "missing.txt"),
        (["--workdir", str(tmp_path / "nothing")], "no trained model"),
        (["--out", str(texts / "cost.json")], "cannot write the cost model"),
    ]
    for extra, expected in cases:
        line = _one_line_error(monkeypatch, capsys, [*base, *extra])
        assert expected in line, extra
    assert not (tmp_path / "c.json").exists()


def test_the_command_explains_itself():
    result = CliRunner().invoke(app, ["costs", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--price-per-ms-mobile" in result.output and "--cloud-charge" in result.output
