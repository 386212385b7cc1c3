"""The metric functions of bench/nlu_quality.py (no model needed)."""
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "nlu_quality", Path(__file__).resolve().parents[1] / "bench" / "nlu_quality.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_prf():
    assert bench.prf(0, 0, 0) == (0.0, 0.0, 0.0)
    p, r, f = bench.prf(3, 1, 2)
    assert (p, r) == (0.75, 0.6) and f == pytest.approx(2 * 0.75 * 0.6 / 1.35)


def test_plate_values_match_in_any_written_form():
    gold = [{"entity": "plate", "value": "魯Ｂ·１２３４５"}, {"entity": "plate", "value": "鲁B洞拐幺46"}]
    predicted = [{"entity": "plate", "value": "鲁B12345", "start": 1, "end": 8},
                 {"entity": "plate", "value": "鲁b07146", "start": 10, "end": 17}]
    assert bench.entity_counts(gold, predicted) == {"plate": {"tp": 2}}


def test_entity_mismatches_and_duplicates():
    gold = [{"entity": "facility_type", "value": "signal"}, {"entity": "location", "value": "海尔路"}]
    predicted = [{"entity": "facility_type", "value": "sign", "start": 0, "end": 3},
                 {"entity": "vin_suffix", "value": "please", "start": 4, "end": 10},
                 {"entity": "vin_suffix", "value": "please", "start": 4, "end": 10}]  # two extractors
    counts = bench.entity_counts(gold, predicted)
    assert counts == {"facility_type": {"fp": 1, "fn": 1}, "location": {"fn": 1}, "vin_suffix": {"fp": 1}}
    report = bench.entity_report([(gold, predicted), (gold, gold)])
    assert report["facility_type"]["precision"] == 0.5 and report["facility_type"]["support"] == 2
    assert report["vin_suffix"]["f1"] == 0.0


def test_intent_report():
    gold = ["greet", "greet", "faq/pay_fine", "faq/e_ticket"]
    predicted = ["greet", "nlu_fallback", "faq/pay_fine", "faq/pay_fine"]
    report = bench.intent_report(gold, predicted)
    assert report["accuracy"] == 0.5
    assert [row["intent"] for row in report["per_intent"]] == ["faq/e_ticket", "faq/pay_fine", "greet"]
    f1 = {row["intent"]: row["f1"] for row in report["per_intent"]}
    assert f1["faq/e_ticket"] == 0 and f1["faq/pay_fine"] == pytest.approx(2 / 3)
    assert report["macro_f1"] == pytest.approx((0 + 2 / 3 + 2 / 3) / 3)  # over gold intents only
    assert report["confusions"][0]["count"] == 1 and len(report["confusions"]) == 2
    assert bench.intent_report([], [])["macro_f1"] is None


def test_f1_by_label_agrees_with_the_report():
    gold = ["greet", "greet", "faq/pay_fine", "faq/e_ticket", "deny"]
    predicted = ["greet", "deny", "faq/pay_fine", "faq/pay_fine", "deny"]
    report = {row["intent"]: row["f1"] for row in bench.intent_report(gold, predicted)["per_intent"]}
    assert bench.f1_by_label(list(zip(gold, predicted))) == pytest.approx(report)


def test_bootstrap_intervals():
    assert bench.bootstrap_intervals(["a"] * 10 + ["b"] * 10, ["a"] * 10 + ["b"] * 10)["macro_f1"] == [1.0, 1.0]
    # One miss in twelve: the point estimate lies inside, and fewer examples give a wider interval.
    few = bench.bootstrap_intervals(["a"] * 12 + ["b"] * 12, ["a"] * 11 + ["b"] * 13)
    many = bench.bootstrap_intervals(["a"] * 120 + ["b"] * 120, (["a"] * 11 + ["b"]) * 10 + ["b"] * 120)
    f1_a = 2 * 11 / (2 * 11 + 1)
    for spread in (few, many):
        low, high = spread["per_intent"]["a"]
        assert low < f1_a <= high
    width = lambda spread: spread["per_intent"]["a"][1] - spread["per_intent"]["a"][0]  # noqa: E731
    assert width(few) > 2 * width(many)
    assert bench.bootstrap_intervals([], [])["macro_f1"] is None


@pytest.mark.parametrize("parse, label", [
    ({"intent": {"name": "greet"}}, "greet"),
    ({"intent": {"name": "faq"}}, "faq"),
    ({"intent": {"name": "faq"}, "response_selector": {
        "faq": {"response": {"intent_response_key": "faq/pay_fine"}}}}, "faq/pay_fine"),
    ({"intent": {"name": "faq"}, "response_selector": {
        "default": {"response": {"intent_response_key": "faq/e_ticket"}}}}, "faq/e_ticket"),
    ({"intent": {"name": "greet"}, "response_selector": {
        "faq": {"response": {"intent_response_key": "faq/pay_fine"}}}}, "greet"),
    ({"intent": None}, "None"),
])
def test_predicted_label(parse, label):
    assert bench.predicted_label(parse) == label


def test_accuracy_by_file():
    rows = [{"file": "blind_faq.yml", "gold": "faq/pay_fine", "predicted": "faq/pay_fine"},
            {"file": "blind_faq.yml", "gold": "faq/e_ticket", "predicted": "faq/pay_fine"},
            {"file": "faq.yml", "gold": "greet", "predicted": "greet"}]
    assert bench.accuracy_by_file(rows) == {"blind_faq.yml": {"accuracy": 0.5, "examples": 2},
                                            "faq.yml": {"accuracy": 1.0, "examples": 1}}
