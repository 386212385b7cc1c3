"""The training data and the held-out split: what the NLU figures in bench/ rest on."""
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from nlu.normalise import normalise

ROOT = Path(__file__).resolve().parents[1]
MIN_EXAMPLES = 40  # per intent, issue 3
MIN_TEST_EXAMPLES = 25  # per intent in data/test


def _examples(folder: str) -> list[tuple[str, str]]:
    from rasa.shared.nlu.training_data.loading import load_data

    rows = []
    for path in sorted((ROOT / folder).glob("*.yml")):
        for m in load_data(str(path)).nlu_examples:
            if m.get("text") and m.get("intent"):
                rows.append((m.get("intent_response_key") or m.get("intent"), m.get("text")))
    return rows


def _key(text: str) -> str:
    """What the model sees, give or take punctuation, spacing and case."""
    return "".join(ch for ch in normalise(text) if unicodedata.category(ch)[0] not in "PZ").lower()


@pytest.fixture(scope="module")
def training() -> list[tuple[str, str]]:
    return _examples("data/nlu")


@pytest.mark.parametrize("split", ["data/test", "data/dev"])
def test_held_out_splits_are_never_trained_on(training, split):
    seen = {_key(text): intent for intent, text in training}
    leaked = [(intent, text, seen[_key(text)]) for intent, text in _examples(split) if _key(text) in seen]
    assert leaked == []


def test_dev_and_test_splits_share_nothing():
    # data/dev is for choosing between models; data/test stays unseen by those choices.
    test = {_key(text) for _, text in _examples("data/test")}
    assert [text for _, text in _examples("data/dev") if _key(text) in test] == []


def test_dev_split_covers_every_intent(training):
    intents = {intent for intent, _ in training} - {"link_account"}
    assert intents - {intent for intent, _ in _examples("data/dev")} == set()


def test_test_split_scores_every_intent_on_enough_examples(training):
    # Per-intent F1 on a dozen examples moves about 0.04 per example: the floor needs more.
    held_out = Counter(intent for intent, _ in _examples("data/test"))
    thin = {intent: held_out[intent] for intent in {intent for intent, _ in training}
            if held_out[intent] < MIN_TEST_EXAMPLES}
    assert thin == {}


def test_every_intent_has_enough_examples(training):
    counts = Counter(intent.split("/")[0] if intent.startswith("faq/") else intent for intent, _ in training)
    faq = Counter(intent for intent, _ in training if intent.startswith("faq/"))
    thin = {intent: n for intent, n in {**counts, **faq}.items()
            if n < MIN_EXAMPLES and intent != "link_account"}
    assert thin == {}
